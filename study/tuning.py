"""The thin Ray Tune adapter: trainable, MLflow callback, searcher and Tuner.

Everything below it (training, losses, metrics, data, tracking) runs without Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace, build_sampler
from study.config import StudyConfig, TrialConfig
from study.data.bundle import DataBundle
from study.losses import loss_family
from study.seeding import SeedGroupSearcher
from study.tracking import StudyTracker
from study.train import OBJECTIVES, TrialDiverged, train_trial

logger = logging.getLogger(__name__)

OPTUNA_STUDY_NAME = "study"
OPTUNA_FILE = "optuna.db"
# Each child run's artifact holding the full resolved trial config (params are strings).
TRIAL_CONFIG_ARTIFACT = "trial_config.json"
DIVERGED_MARKER = "diverged.txt"


def trainable(config: dict[str, Any], data: DataBundle) -> None:
    """Ray Tune function trainable: one trial of ``train_trial``, resumed from Tune's checkpoint.

    A trial that diverged leaves a marker in its folder, so a retry granted by
    ``--max-failures`` fails at once instead of training into the same divergence again.
    """
    trial_config = with_loader_workers(TrialConfig.from_mapping(config))
    placement = {"node_id": ray.get_runtime_context().get_node_id(), **device_description()}
    marker = Path(tune.get_context().get_trial_dir()) / DIVERGED_MARKER
    if marker.exists():
        raise TrialDiverged(f"not retried, the trial diverged before: {marker.read_text()}")

    def report(metrics: dict[str, float], folder: Path) -> None:
        tune.report({**metrics, **placement}, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train_trial(trial_config, data, report)
            return
        with checkpoint.as_directory() as folder:
            train_trial(trial_config, data, report, resume_from=Path(folder))
    except TrialDiverged as error:
        marker.write_text(str(error))
        raise


def with_loader_workers(config: TrialConfig) -> TrialConfig:
    """On a GPU, give the DataLoader the trial's CPUs but one, unless the config sets workers."""
    if config.num_workers or not torch.cuda.is_available():
        return config
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    return dataclasses.replace(config, num_workers=max(0, int(cpus) - 1))


def device_description() -> dict[str, str]:
    """Name the device a trial trains on, for the MLflow run's tags."""
    if not torch.cuda.is_available():
        return {"device": "cpu"}
    properties = torch.cuda.get_device_properties(0)
    return {"device": "cuda", "gpu_name": properties.name, "gpu_memory_gib": f"{properties.total_memory / 2**30:.1f}"}


def trial_tags(config: dict[str, Any]) -> dict[str, str]:
    """Return the flat MLflow tags that group and filter trials in the MLflow UI."""
    trial = TrialConfig.from_mapping(config)
    return {
        "loss_family": loss_family(trial.loss_schedule, trial.ce_weight),
        "architecture": trial.architecture,
        "encoder": trial.encoder,
        "seed": str(trial.seed),
        "config_id": trial.config_id,
        "loss_setting": trial.loss_setting,
    }


def _error_reason(trial) -> str:
    """Return the last line of the trial's error trace, e.g. "TrialDiverged: non-finite ...".

    Tune writes the trace to the trial's local folder first; ``Trial.get_error`` reads the
    storage copy, which may not be synced yet when the error callback runs.
    """
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and Path(error_file).is_file():
        text = Path(error_file).read_text(errors="replace")
    if not text:
        text = str(trial.get_error() or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error (see error.txt in the trial's folder)"


class MLflowTrialCallback(tune.Callback):
    """Mirror every trial into an MLflow child run from the driver.

    Ray's ``MLflowLoggerCallback`` logs from the driver too, but gives every trial the same tags
    and records no failure reason; the study needs per-trial tags (loss family, seed,
    configuration id), a parent run, and the reason a trial failed.
    """

    def __init__(self, tracker: StudyTracker, data_hash: str = "") -> None:
        self.tracker = tracker
        self.data_hash = data_hash
        self.run_ids: dict[str, str] = {}
        self._placed: set[str] = set()

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self.run_ids:
            # A trial resumed by a new driver continues the run the earlier driver opened.
            earlier = self.tracker.find_trial_run(trial.trial_id)
            if earlier is not None:
                self.tracker.reopen_run(earlier)
                self.run_ids[trial.trial_id] = earlier
        if trial.trial_id not in self.run_ids:
            params = TrialConfig.from_mapping(trial.config).to_dict()
            tags = {
                **trial_tags(trial.config),
                "ray_trial_id": trial.trial_id,
                "trial_path": trial.path,
                "data_hash": self.data_hash,
            }
            name = f"{params['config_id']}-seed{params['seed']}" if params["config_id"] else trial.trial_id
            run_id = self.tracker.start_trial(name, params, tags)
            self.tracker.log_dict(run_id, params, TRIAL_CONFIG_ARTIFACT)
            self.run_ids[trial.trial_id] = run_id
        return self.run_ids[trial.trial_id]

    def _record_checkpoint(self, trial) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            self.tracker.set_tags(self._run_id(trial), {"checkpoint_path": checkpoint.path})

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        run_id = self._run_id(trial)
        self.tracker.log_metrics(run_id, _user_metrics(result), step=step)
        placement = {key: result[key] for key in PLACEMENT_KEYS if key in result}
        if placement and trial.trial_id not in self._placed:
            self.tracker.set_tags(run_id, placement)
            self._placed.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        values = {key: result.get(key) for key in OBJECTIVES}
        config = TrialConfig.from_mapping(trial.config).to_dict()
        params = {key: config[key] for key in ("config_id", "ce_weight", "loss_schedule", "dice_variant", "architecture", "encoder", "seed")}
        logger.info("trial %s finished: %s | %s", trial.trial_id, _format(values), _format(params))
        self._record_checkpoint(trial)
        self.tracker.end_trial(self._run_id(trial), failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        reason = _error_reason(trial)
        logger.error("trial %s failed: %s", trial.trial_id, reason)
        self._record_checkpoint(trial)
        self.tracker.end_trial(self._run_id(trial), failed=True, reason=reason)


# Placement of a trial (node, device, GPU), reported as strings with every result and recorded
# once as run tags.
PLACEMENT_KEYS = ("node_id", "device", "gpu_name", "gpu_memory_gib")

# Ray adds bookkeeping keys to every result (time_this_iter_s, pid, ...); MLflow gets the
# trial's own metrics only.
_RAY_KEYS = {
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "node_ip",
    "time_since_restore", "iterations_since_restore", "done", "should_checkpoint",
    "checkpoint_dir_name", "date", "hostname", "trial_id", "experiment_tag",
}


def _user_metrics(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in _RAY_KEYS and key != "config"}


def _format(values: dict[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class DefineByRun:
    """A space's sample function that also tags each configuration with its Optuna trial number.

    A class rather than a closure, because Tune pickles the searcher into every experiment
    checkpoint.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        derived = self.space.sample(trial) or {}
        return {**derived, "config_id": f"c{trial.number:04d}"}


def build_searcher(
    space: SearchSpace, study: StudyConfig, base_config: dict[str, Any], num_configs: int
) -> SeedGroupSearcher:
    """Build the Optuna searcher (stored in SQLite in the study folder), wrapped for seeds.

    Only as many of the space's initial points as there are configurations are enqueued, because
    Optuna keeps an enqueued point as a WAITING trial until it runs. ``study.initial_points``
    false enqueues none.
    """
    points = [dict(point) for point in space.initial_points[:num_configs]] if study.initial_points else []
    storage = optuna.storages.RDBStorage(f"sqlite:///{Path(study.storage) / OPTUNA_FILE}")
    # Created here rather than by OptunaSearch (which then loads it) to name the objectives,
    # so optuna-dashboard shows id_dice and ood_specificity instead of values 0 and 1.
    optuna_study = optuna.create_study(
        storage=storage, study_name=OPTUNA_STUDY_NAME, directions=["maximize", "maximize"], load_if_exists=True
    )
    with warnings.catch_warnings():
        # Optuna marks this method experimental, and the warning would repeat for every study.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna_study.set_metric_names(list(OBJECTIVES))
    inner = OptunaSearch(
        space=DefineByRun(space),
        metric=list(OBJECTIVES),
        mode=["max", "max"],
        points_to_evaluate=points or None,
        sampler=build_sampler(space, study.sampler, study.sampler_seed),
        study_name=OPTUNA_STUDY_NAME,
        storage=storage,
    )
    seeds = [study.seed_offset + index for index in range(study.seeds)]
    return SeedGroupSearcher(inner, list(OBJECTIVES), seeds, base_config)


def runnable(study: StudyConfig, data: DataBundle):
    """Return the trainable with the study's data (shared through Ray's object store) and resources."""
    resources = {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(trainable, data=data), resources)


def trial_folder_name(trial) -> str:
    """Name trial folders by trial id; Tune's default packs the whole config into the name."""
    return f"trial_{trial.trial_id}"


def build_tuner(
    space: SearchSpace,
    study: StudyConfig,
    data: DataBundle,
    tracker: StudyTracker,
    base_config: dict[str, Any],
    num_configs: int,
) -> tune.Tuner:
    """Assemble the Tuner: resources per trial, searcher, storage, checkpoints and callbacks."""
    run_config = tune.RunConfig(
        name=study.name,
        storage_path=str(Path(study.storage) / "ray"),
        callbacks=[MLflowTrialCallback(tracker, data_hash=data.content_hash)],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=study.max_failures),
        verbose=1,
    )
    tune_config = tune.TuneConfig(
        search_alg=build_searcher(space, study, base_config, num_configs),
        num_samples=num_configs * study.seeds,
        max_concurrent_trials=study.max_concurrent,
        trial_dirname_creator=trial_folder_name,
        # A finished trial's worker process runs the next one, so each trial does not pay for a
        # new process and the torch/timm imports (several seconds on a small machine).
        reuse_actors=True,
    )
    return tune.Tuner(runnable(study, data), tune_config=tune_config, run_config=run_config)
