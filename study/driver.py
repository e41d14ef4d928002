"""The study driver: load data, start Ray and MLflow, run the Tuner, print the front.

``study.run`` validates the command line and calls ``run_study``; this module is the only one
that starts Ray.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import yaml

from analysis.pareto import pareto_mask
from search_spaces import SearchSpace
from study.config import ConfigError, StudyConfig, TrialConfig
from study.data import DataBundle, load_data
from study.manifest import MANIFEST_FILE, build_manifest, write_manifest
from study.tracking import StudyTracker
from study.train import OBJECTIVES

logger = logging.getLogger("study")

STUDY_FILE = "study.yaml"


def load_study_data(study: StudyConfig) -> DataBundle:
    """Decode every split once, before Ray starts; data errors become ConfigError."""
    try:
        bundle = load_data(
            study.data,
            image_size=study.image_size,
            data_root=study.data_root,
            cache_dir=None,
        )
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"data {study.data!r} cannot be used: {error}") from error
    for warning in bundle.warnings:
        logger.warning("data: %s", warning)
    logger.info("data %s: %s", bundle.description, bundle.summary())
    return bundle


def start_ray(study: StudyConfig) -> bool:
    """Connect to Ray; return True when this call started it (and so must stop it).

    A runtime that is already initialised (a notebook, a test session) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False

    # Every trial checkpoints each epoch and keeps one checkpoint, so Tune snapshots its state
    # often. On a local disk that is cheap, and the warning about it would repeat every epoch.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    if study.address:
        ray.init(address=study.address, log_to_driver=True)
    else:
        # "local" starts a runtime for this study; without it, ray.init() joins whatever cluster
        # /tmp/ray/ray_current_cluster names, and hangs when that cluster has gone.
        ray.init(address="local", include_dashboard=False, log_to_driver=True)
    return True


def save_study_file(study: StudyConfig, folder: Path) -> Path:
    path = folder / STUDY_FILE
    path.write_text(yaml.safe_dump(study.to_dict(), sort_keys=False))
    return path


def default_concurrency(study: StudyConfig) -> int:
    """Return how many trials fit on the cluster at once, from Ray's resources.

    Tune lets a custom searcher keep only one trial pending unless it is wrapped in a
    concurrency limit, so without an explicit limit trials would start one by one.
    """
    import ray

    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 1) // study.cpus_per_trial)
    if study.gpus_per_trial > 0:
        fits = min(fits, int(resources.get("GPU", 0) // study.gpus_per_trial))
    return max(1, fits)


def summarise(results) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return one row per Ray trial and one row per configuration (seed means)."""
    trials = []
    for result in results:
        config = TrialConfig.from_mapping(result.config or {})
        metrics = result.metrics or {}
        trials.append(
            {
                "config_id": config.config_id,
                "seed": config.seed,
                "ce_weight": config.ce_weight,
                "loss_schedule": config.loss_schedule,
                "dice_variant": config.dice_variant,
                "architecture": config.architecture,
                "status": "FAILED" if result.error else "OK",
                **{name: metrics.get(name, math.nan) for name in OBJECTIVES},
            }
        )
    trials.sort(key=lambda row: (row["config_id"], row["seed"] if row["seed"] is not None else -1))

    configurations: dict[str, dict[str, Any]] = {}
    for row in trials:
        entry = configurations.setdefault(
            row["config_id"], {**{k: row[k] for k in ("config_id", "ce_weight", "loss_schedule", "dice_variant", "architecture")}, "runs": []}
        )
        entry["runs"].append(row)
    summary = []
    for entry in configurations.values():
        runs = entry.pop("runs")
        failed = any(run["status"] != "OK" for run in runs)
        for name in OBJECTIVES:
            values = [run[name] for run in runs]
            entry[name] = math.nan if failed else sum(values) / len(values)
        entry["seeds"] = len(runs)
        entry["status"] = "FAILED" if failed else "OK"
        summary.append(entry)
    points = [[entry[name] for name in OBJECTIVES] for entry in summary]
    for entry, on_front in zip(summary, pareto_mask(points) if points else []):
        entry["front"] = bool(on_front)
    return trials, summary


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4f}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines += ["  ".join(value.ljust(width) for value, width in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def print_summary(study: StudyConfig, trials, configurations, folder: Path) -> None:
    print("\nTrials:")
    print(format_table(trials, ["config_id", "seed", "ce_weight", "loss_schedule", "dice_variant", "architecture", "status", *OBJECTIVES]))
    front = sorted((entry for entry in configurations if entry.get("front")), key=lambda entry: -entry[OBJECTIVES[0]])
    print(f"\nPareto front (configurations not beaten on both {OBJECTIVES[0]} and {OBJECTIVES[1]}, seed means):")
    print(format_table(front, ["config_id", "ce_weight", "loss_schedule", "dice_variant", "architecture", "seeds", *OBJECTIVES]))
    print(f"\nStudy folder:   {folder}")
    print(f"MLflow UI:      mlflow ui --backend-store-uri {study.tracking_uri}")
    print(f"Optuna storage: optuna-dashboard sqlite:///{folder / 'optuna.db'}")


def write_study_report(study: StudyConfig, folder: Path) -> None:
    """Write the analysis report and log it to the parent run; a failure here loses no trial."""
    from analysis.report import write_report

    try:
        report = write_report(storage=folder, tracking_uri=study.tracking_uri, experiment=study.name)
    except Exception:  # noqa: BLE001 - the trials are recorded; the report can be rebuilt later
        logger.exception("writing the report failed; rebuild it with: python -m analysis --storage %s", folder)
        return
    print(f"Report:         {report / 'report.md'}")


def check_gpus(study: StudyConfig) -> None:
    """Fail before any trial when a trial needs more CPUs or GPUs than the machine or cluster has."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if not study.address and study.cpus_per_trial > cpus:
        raise ConfigError(
            f"--cpus-per-trial={study.cpus_per_trial:g} but this machine has {cpus:g} CPUs for Ray; "
            "no trial could ever start. Lower --cpus-per-trial"
        )
    if study.gpus_per_trial <= 0:
        return
    available = ray.cluster_resources().get("GPU", 0)
    if available < min(study.gpus_per_trial, 1):
        raise ConfigError(
            f"--gpus-per-trial={study.gpus_per_trial} but Ray sees {available:g} GPUs "
            f"({'this machine' if not study.address else 'cluster ' + study.address}); "
            "run on a GPU machine or cluster, or use --gpus-per-trial 0"
        )


def number_of_configs(space: SearchSpace, study: StudyConfig) -> int:
    if study.num_samples is not None:
        return study.num_samples
    if (study.sampler or space.sampler) == "grid" and space.grid_size:
        return space.grid_size
    return 8


def resolve_run_settings(study: StudyConfig, space: SearchSpace, data: DataBundle) -> None:
    """Replace "decided at run time" settings by the values the study uses, for study.yaml."""
    study.num_samples = number_of_configs(space, study)
    study.sampler = study.sampler or space.sampler
    if study.image_size is None:
        height, width = data.splits["train"].images.shape[1:3]
        study.image_size = int(height) if height == width else None
    if study.max_concurrent is None:
        study.max_concurrent = default_concurrency(study)


def record_study_start(
    study: StudyConfig, space: SearchSpace, base_config: dict[str, Any], data: DataBundle, folder: Path
) -> StudyTracker:
    """Open the MLflow parent run and attach the resolved config, manifest and data warnings."""
    tracker = StudyTracker(study.tracking_uri, study.name, artifact_root=folder / "mlartifacts")
    config_file = save_study_file(study, folder)
    tracker.start_study(study.to_dict(), resume=bool(study.resume))
    tracker.log_artifact(config_file)
    tracker.set_tags(tracker.parent_run_id, {"data": data.description, "data_hash": data.content_hash})
    if not (folder / MANIFEST_FILE).exists():
        # A resumed study keeps the manifest of its first start.
        tracker.log_artifact(write_manifest(folder, build_manifest(study.to_dict(), space, base_config, data)))
    if data.warnings:
        warnings_file = folder / "data_warnings.txt"
        warnings_file.write_text("\n".join(data.warnings) + "\n")
        tracker.log_artifact(warnings_file)
    return tracker


def run_study(study: StudyConfig, space: SearchSpace, base_config: dict[str, Any], folder: Path) -> int:
    """Run (or resume) the study and print its front; return the process exit code."""
    import ray
    from ray import tune

    from study import tuning

    data = load_study_data(study)
    started_ray = start_ray(study)
    try:
        check_gpus(study)
        resolve_run_settings(study, space, data)
        folder.mkdir(parents=True, exist_ok=True)
        tracker = record_study_start(study, space, base_config, data, folder)

        experiment = Path(study.storage) / "ray" / study.name
        if study.resume and tune.Tuner.can_restore(str(experiment)):
            logger.info("resuming the Ray Tune experiment in %s", experiment)
            tuner = tune.Tuner.restore(str(experiment), trainable=tuning.runnable(study, data), resume_unfinished=True)
        else:
            tuner = tuning.build_tuner(space, study, data, tracker, base_config, study.num_samples)
        results = tuner.fit()
    finally:
        # Stopped before the summary, so late log lines of Ray workers do not bury it.
        if started_ray:
            ray.shutdown()

    closed = tracker.close_stale_runs()
    if closed:
        logger.warning("closed %d MLflow trial runs left RUNNING by an earlier driver as FAILED", closed)
    trials, configurations = summarise(results)
    print_summary(study, trials, configurations, folder)
    write_study_report(study, folder)
    failed = all(row["status"] != "OK" for row in trials) if trials else True
    tracker.end_study(failed=failed)
    return 1 if failed else 0
