"""MLflow records of a study: one parent run per study, one child run per trial.

Only the driver process writes to MLflow, so many concurrent trials never open the SQLite store
at once. SQLite allows one writer, and several processes writing give "database is locked".
Nothing here imports Ray: the Tune adapter calls these methods from its callbacks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

ROLE_TAG = "lesion_study.role"
STUDY_TAG = "lesion_study.study"
# MLflow caps a param value at 6000 characters (MLflow 3.x); longer values are cut with a marker.
MAX_PARAM_LENGTH = 6000


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Keep the entries MLflow can store as metrics: finite or NaN numbers, not booleans."""
    metrics = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isinf(value):
            continue
        metrics[name] = float(value)
    return metrics


class StudyTracker:
    """Writes a study and its trials to an MLflow tracking store.

    Args:
        tracking_uri: e.g. ``sqlite:////abs/path/mlflow.db`` or ``http://127.0.0.1:5000``.
        experiment_name: the MLflow experiment, one per study name.
        artifact_root: folder for artifacts of a newly created experiment (a SQLite store puts
            them under the working directory otherwise).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_root = artifact_root
        self._client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The client keeps a database engine, which cannot be pickled, so it is rebuilt on use.
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def start_study(self, study_config: Mapping[str, Any], resume: bool = False) -> str:
        """Create (or on resume, reopen) the experiment and the study's parent run."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            # A tracking server chooses where artifacts go (it may proxy them); a local store
            # would otherwise put them under the current working directory.
            remote = self.tracking_uri.startswith(("http://", "https://"))
            artifact_location = self.artifact_root.resolve().as_uri() if self.artifact_root and not remote else None
            self.experiment_id = self.client.create_experiment(self.experiment_name, artifact_location=artifact_location)
        else:
            self.experiment_id = experiment.experiment_id

        if resume:
            parents = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'", max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if parents:
                self.parent_run_id = parents[0].info.run_id
                self.client.update_run(self.parent_run_id, status="RUNNING")
                return self.parent_run_id

        run = self.client.create_run(
            self.experiment_id,
            run_name=self.experiment_name,
            tags={ROLE_TAG: "study", STUDY_TAG: self.experiment_name},
        )
        self.parent_run_id = run.info.run_id
        self.client.log_batch(
            self.parent_run_id,
            params=[Param(key, _param_value(value)) for key, value in study_config.items() if key != "trial"],
        )
        return self.parent_run_id

    def start_trial(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """Create a child run of the study run with the trial's params and tags."""
        if self.parent_run_id is None:
            raise RuntimeError("start_study must run before start_trial")
        all_tags = {
            "mlflow.parentRunId": self.parent_run_id,
            ROLE_TAG: "trial",
            STUDY_TAG: self.experiment_name,
            **{key: str(value) for key, value in tags.items()},
        }
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self.client.log_batch(
            run.info.run_id, params=[Param(key, _param_value(value)) for key, value in params.items()]
        )
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
        values = numeric_metrics(metrics)
        timestamp = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(key, value, timestamp, step) for key, value in values.items()])

    def log_dict(self, run_id: str, values: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(run_id, dict(values), artifact_file)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def end_trial(self, run_id: str, failed: bool, reason: str | None = None) -> None:
        """Close a trial's run as FINISHED or FAILED, with the failure reason as a tag."""
        if reason:
            self.set_tags(run_id, {"failure_reason": reason[:5000]})
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def log_artifact(self, path: Path, artifact_path: str | None = None, run_id: str | None = None) -> None:
        self.client.log_artifact(run_id or self.parent_run_id, str(path), artifact_path)

    def end_study(self, failed: bool = False) -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")

    def find_trial_run(self, ray_trial_id: str) -> str | None:
        """Return the run id of the child run recorded for a Ray trial, if any."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.ray_trial_id = '{ray_trial_id}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def reopen_run(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def close_stale_runs(self) -> int:
        """Mark this study's child runs still RUNNING (their trial died with a driver) as FAILED.

        Only children of this study's parent run are touched, so another study logging to the
        same experiment on a shared tracking server keeps its running trials.
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = 'trial' "
                f"and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
            ),
            max_results=10_000,
        )
        for run in runs:
            self.end_trial(run.info.run_id, failed=True, reason="the study driver stopped while this trial ran")
        return len(runs)
