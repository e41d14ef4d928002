"""Evaluate a study's saved models on the test splits of another (or the same) dataset.

Each chosen run's last checkpoint (``checkpoint_path`` tag) is loaded into the model its
``trial_config.json`` describes, and ``study.train.evaluate_splits`` scores it on the data's
``id_test`` and ``ood_test`` splits. Results carry the ``test_`` prefix, like the study's own
test metrics, and are summarised per configuration with the same seed statistics as the report.

Which runs: the configurations named in ``configs``, or the validation front (``front=True``),
or every configuration; only FINISHED runs are evaluated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis import stats
from analysis.records import RecordsError, read_study
from analysis.report import markdown_table

logger = logging.getLogger(__name__)

TEST_OBJECTIVES = tuple(stats.TEST_PREFIX + name for name in stats.OBJECTIVES)
REEVALUATION_FOLDER = "reevaluation"


class CheckpointError(ValueError):
    """A run's checkpoint is missing or unreadable; the message names the run and the path."""


def choose_runs(runs: pd.DataFrame, configs: Sequence[str] | None, front: bool) -> pd.DataFrame:
    """Return the FINISHED runs of the chosen configurations.

    Raises:
        RecordsError: on an unknown configuration id, or when nothing is left to evaluate.
    """
    if runs.empty:
        raise RecordsError("the study has no trial runs to re-evaluate")
    finished = runs[runs["status"] == "FINISHED"]
    known = sorted(runs["config_id"].unique())
    if configs:
        unknown = sorted(set(configs) - set(known))
        if unknown:
            raise RecordsError(f"unknown configurations {unknown}; the study has {known}")
        chosen = list(configs)
    elif front:
        table = stats.add_front(stats.aggregate_configurations(runs), runs, replicates=1)
        chosen = list(table.loc[table["front"].astype(bool), "config_id"])
    else:
        chosen = known
    selected = finished[finished["config_id"].isin(chosen)]
    if selected.empty:
        raise RecordsError(f"configurations {chosen} have no FINISHED run to re-evaluate")
    return selected


def _trial_config(row: pd.Series):
    from study.config import TrialConfig

    names = [item.name for item in dataclasses.fields(TrialConfig)]
    values = {name: row[name] for name in names if name in row and not _missing(row[name])}
    values["config_id"] = str(row.get("config_id", ""))
    values["loss_setting"] = "" if _missing(row.get("loss_setting")) else str(row.get("loss_setting"))
    return TrialConfig.from_mapping(values)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def evaluate_run(row: pd.Series, data, device) -> dict[str, float]:
    """Load one run's checkpoint and return its metrics on ``data``'s test splits (``test_`` keys).

    Raises:
        CheckpointError: when the run has no checkpoint_path tag or the checkpoint file is missing.
    """
    import torch

    from study.models import build_model
    from study.train import CHECKPOINT_FILE, evaluate_splits

    folder = row.get("checkpoint_path") or ""
    path = Path(str(folder)) / CHECKPOINT_FILE
    if not folder or not path.is_file():
        raise CheckpointError(
            f"run {row['run_id']} ({row.get('run_name', '')}) has no checkpoint at {path if folder else '(no checkpoint_path tag)'}; "
            "re-evaluation needs the study folder's ray/ checkpoints, or leave this configuration out with --configs"
        )
    config = _trial_config(row)
    model = build_model(config.architecture, config.encoder)
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.to(device)
    metrics = evaluate_splits(model, data.splits["id_test"], data.splits["ood_test"], config, device)
    return {stats.TEST_PREFIX + name: value for name, value in metrics.items()}


def reevaluate(
    storage: Path | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    data: str = "synthetic",
    configs: Sequence[str] | None = None,
    front: bool = False,
    image_size: int | None = None,
    data_root: str | None = None,
    output: Path | None = None,
) -> Path:
    """Re-evaluate the chosen runs on ``data`` and write the tables; return the output folder.

    Args:
        data: "synthetic" or a dataset config file (see docs/data.md).
        configs: configuration ids to evaluate; ``front`` picks the validation front instead.
        image_size: network input side; default the study's ``image_size`` from study.yaml.
        output: default ``<storage>/reevaluation``.

    Writes ``reevaluation_runs.csv``, ``reevaluation_configurations.csv`` and ``reevaluation.md``.
    """
    import torch

    from study.data import load_data

    records = read_study(storage, tracking_uri, experiment)
    selected = choose_runs(records.runs, configs, front)
    if output is None:
        if records.source.storage is None:
            raise RecordsError("no output folder: pass --output DIR when no study folder is given")
        output = records.source.storage / REEVALUATION_FOLDER
    size = image_size or records.source.settings.get("image_size")
    if not size:
        raise RecordsError("the study's image size is unknown (no study.yaml); pass --image-size N")
    bundle = load_data(data, image_size=int(size) if size else None, data_root=data_root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # One row per run: identity and settings from the study, metrics from the new data.
    rows = []
    for _, row in selected.iterrows():
        logger.info("re-evaluating run %s (%s, seed %s)", row["run_id"], row["config_id"], row["seed"])
        keep = {name: row[name] for name in ("run_id", "run_name", "config_id", "seed", "status", *stats.CONFIG_COLUMNS) if name in row}
        rows.append({**keep, "data": bundle.description, "data_hash": bundle.content_hash, **evaluate_run(row, bundle, device)})
    runs = pd.DataFrame(rows)
    metrics = [stats.TEST_PREFIX + name for name in (*stats.OBJECTIVES, *stats.COMPANIONS)]
    configurations = stats.aggregate_configurations(runs, TEST_OBJECTIVES, [name for name in metrics if name in runs])

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_csv(folder / "reevaluation_runs.csv", index=False)
    configurations.to_csv(folder / "reevaluation_configurations.csv", index=False)
    (folder / "reevaluation.md").write_text(_markdown(records.source.experiment, bundle, int(size), runs, configurations))
    return folder


def _markdown(experiment: str, bundle, size: int, runs: pd.DataFrame, configurations: pd.DataFrame) -> str:
    formatted = configurations.copy()
    names = [name for name in (*TEST_OBJECTIVES, "test_reference_dice", "test_reference_empty_fraction") if f"{name}_mean" in formatted]
    for name in names:
        formatted[name] = [f"{mean:.4f} [{low:.4f}, {high:.4f}]" for mean, low, high in
                       zip(formatted[f"{name}_mean"], formatted[f"{name}_ci_low"], formatted[f"{name}_ci_high"])]
    lines = [
        f"# Re-evaluation of {experiment}",
        "",
        f"- Data: {bundle.description} (hash {bundle.content_hash}); image size {size}",
        f"- Splits: id_test ({len(bundle.splits['id_test'])} images), ood_test ({len(bundle.splits['ood_test'])} images)",
        f"- Runs evaluated: {len(runs)}",
        "",
        "Seed means with 95% Student t intervals (empty bounds mean a single seed).",
        "",
        markdown_table(formatted, ["config_id", "loss_family", "ce_weight", "loss_schedule", "n", *names]),
        "## Runs",
        "",
        markdown_table(runs, ["run_id", "config_id", "seed", *TEST_OBJECTIVES, "test_reference_dice", "test_reference_empty_fraction"]),
    ]
    return "\n".join(lines)
