"""Read a finished study's trial runs back from MLflow into one pandas table.

MLflow is the record of a study: one parent run (tag ``lesion_study.role=study``) and one child
run per trial (tag ``lesion_study.role=trial``). ``read_study`` returns one row per child run:

- identity: ``run_id``, ``run_name``, ``status``, ``config_id``, ``seed``, ``loss_family``,
  ``loss_setting``, ``architecture``, ``encoder``, ``checkpoint_path``, ``failure_reason``,
  ``data_hash``, ``start_time`` and ``end_time`` (pandas timestamps, UTC);
- every ``TrialConfig`` field, typed, from the run's ``trial_config.json`` artifact, or parsed
  from the run's string params when the artifact cannot be read;
- the last logged value of every metric: the last epoch's validation metrics under their own
  names (``id_dice``, ``ood_specificity``, ...) and the test metrics (``test_id_dice``, ...).
  A metric whose name is also a trial setting (training logs the last epoch's ``ce_weight``)
  is stored as ``metric_<name>`` so that the setting keeps its column.

Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from study.config import TrialConfig
from study.tracking import ROLE_TAG

logger = logging.getLogger(__name__)

STUDY_FILE = "study.yaml"
# The artifact of each trial run that contains its typed config (written by study.tuning).
TRIAL_CONFIG_ARTIFACT = "trial_config.json"
# Tags copied into the table under the same name.
RUN_TAGS = (
    "config_id", "seed", "loss_family", "loss_setting", "architecture", "encoder",
    "checkpoint_path", "failure_reason", "data_hash",
)
# MLflow's search_runs returns at most this many runs per page.
PAGE_SIZE = 1000
TRIAL_FIELDS = {item.name: item for item in dataclasses.fields(TrialConfig)}


class RecordsError(ValueError):
    """A study's records cannot be found or read; the message names the folder, URI or experiment."""


@dataclass(frozen=True)
class StudySource:
    """Where a study's records live: the tracking store and experiment, and the folder if known."""

    tracking_uri: str
    experiment: str
    storage: Path | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class StudyRecords:
    """A study's trial runs as a table, with the ids needed to write back to its parent run."""

    source: StudySource
    experiment_id: str
    parent_run_id: str | None
    runs: pd.DataFrame


def resolve_source(
    storage: Path | str | None = None, tracking_uri: str | None = None, experiment: str | None = None
) -> StudySource:
    """Find the tracking store and experiment from a study folder, explicit values, or both.

    Explicit ``tracking_uri`` and ``experiment`` win over ``study.yaml`` in ``storage``.

    Raises:
        RecordsError: when neither a study folder nor both the URI and experiment are given,
            or when the folder has no readable ``study.yaml``.
    """
    settings: dict[str, Any] = {}
    folder = None
    if storage is not None:
        folder = Path(storage).expanduser().resolve()
        study_file = folder / STUDY_FILE
        if not study_file.is_file():
            raise RecordsError(
                f"study folder {folder} has no {STUDY_FILE}; pass the --storage folder of a study "
                "run by study.run, or give --tracking-uri and --experiment"
            )
        try:
            settings = yaml.safe_load(study_file.read_text()) or {}
        except yaml.YAMLError as error:
            raise RecordsError(f"{study_file} is not valid YAML: {error}") from error
        tracking_uri = tracking_uri or settings.get("tracking_uri") or f"sqlite:///{folder / 'mlflow.db'}"
        experiment = experiment or settings.get("name")
    if not tracking_uri or not experiment:
        raise RecordsError(
            f"cannot locate the study: got storage={storage!r}, tracking_uri={tracking_uri!r}, "
            f"experiment={experiment!r}; give a study folder, or both a tracking URI and an experiment name"
        )
    return StudySource(tracking_uri=tracking_uri, experiment=experiment, storage=folder, settings=settings)


def _parse_param(name: str, text: str) -> Any:
    """Turn a string param back into its ``TrialConfig`` type (the field's default's type)."""
    default = TRIAL_FIELDS[name].default
    if text == "None":
        return None
    if isinstance(default, bool):
        return text == "True"
    if isinstance(default, int):
        return int(float(text))
    if isinstance(default, float):
        return float(text)
    return text


def _trial_config(client: MlflowClient, run) -> dict[str, Any]:
    """Return the run's typed trial settings: the JSON artifact, else the parsed params."""
    try:
        artifact_uri = urlparse(run.info.artifact_uri or "")
        if artifact_uri.scheme in ("", "file"):
            # A local artifact store: read the file in place (no copy, no progress bar).
            path = Path(url2pathname(artifact_uri.path)) / TRIAL_CONFIG_ARTIFACT
        else:
            path = Path(client.download_artifacts(run.info.run_id, TRIAL_CONFIG_ARTIFACT))
        values = json.loads(path.read_text())
        return {name: values[name] for name in TRIAL_FIELDS if name in values}
    except Exception as error:  # any store error: the params hold the same values as strings
        logger.debug("run %s: %s unreadable (%s); using params", run.info.run_id, TRIAL_CONFIG_ARTIFACT, error)
    params = run.data.params
    return {name: _parse_param(name, params[name]) for name in TRIAL_FIELDS if name in params}


def _row(client: MlflowClient, run) -> dict[str, Any]:
    tags = run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        **{name: tags.get(name, "") for name in RUN_TAGS},
        "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
        "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True) if run.info.end_time else pd.NaT,
    }
    config = _trial_config(client, run)
    config.pop("config_id", None)
    config.pop("loss_setting", None)
    row.update({key: value for key, value in config.items() if key not in row or key == "seed"})
    for name, value in run.data.metrics.items():
        row[f"metric_{name}" if name in TRIAL_FIELDS or name in row else name] = value
    seed = row.get("seed")
    row["seed"] = int(seed) if seed not in (None, "") else -1
    return row


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=PAGE_SIZE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# NOTE: when the MLflow store is lost, optuna.db still contains each configuration's seed means;
# reading that as a fallback is not implemented.
def read_study(
    storage: Path | str | None = None, tracking_uri: str | None = None, experiment: str | None = None
) -> StudyRecords:
    """Read every trial run of a study, one row per run, sorted by config_id then seed.

    Raises:
        RecordsError: when the study folder, tracking store or experiment cannot be found.
    """
    source = resolve_source(storage, tracking_uri, experiment)
    client = MlflowClient(tracking_uri=source.tracking_uri)
    try:
        found = client.get_experiment_by_name(source.experiment)
    except Exception as error:
        raise RecordsError(f"cannot read MLflow tracking store {source.tracking_uri}: {error}") from error
    if found is None:
        raise RecordsError(
            f"no MLflow experiment named {source.experiment!r} in {source.tracking_uri}; "
            "check the study name (`name` in study.yaml) and the tracking URI"
        )

    parents = _search_all(client, found.experiment_id, f"tags.`{ROLE_TAG}` = 'study'")
    parents.sort(key=lambda run: run.info.start_time or 0, reverse=True)
    trials = _search_all(client, found.experiment_id, f"tags.`{ROLE_TAG}` = 'trial'")
    rows = [_row(client, run) for run in trials]
    runs = pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "status", *RUN_TAGS])
    if rows:
        runs = runs.sort_values(["config_id", "seed"], kind="stable").reset_index(drop=True)
    return StudyRecords(
        source=source,
        experiment_id=found.experiment_id,
        parent_run_id=parents[0].info.run_id if parents else None,
        runs=runs,
    )
