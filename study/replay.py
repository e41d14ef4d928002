"""Re-run one recorded trial exactly: ``python -m study.replay RUN_ID --tracking-uri URI``.

The trial's config comes from its MLflow run (artifact ``trial_config.json``) and the data and
versions from the study's manifest (artifact ``manifest.json`` of the parent run). Before
training, the replay rebuilds the data and compares its hash with the one the run recorded: a
difference stops the replay and names the changed files, unless ``--allow-data-change``. Version
differences only warn. Training runs in this process on the CPU, with the torch thread count the
trial had, and ends with a table of recorded against replayed metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.tracking import MlflowClient

from study.config import TrialConfig
from study.data import load_data
from study.manifest import MANIFEST_FILE, file_differences, package_versions, version_differences
from study.train import train_trial

logger = logging.getLogger("study.replay")

TRIAL_CONFIG_ARTIFACT = "trial_config.json"


class ReplayError(ValueError):
    """The run cannot be replayed as recorded. The message gives the reason and the fix."""


def _load_json_artifact(client: MlflowClient, run_id: str, name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, name, folder)
        except Exception as error:  # MLflow raises several types for a missing artifact
            raise ReplayError(f"run {run_id} has no artifact {name!r} ({error}); was it recorded by this tool?") from error
        return json.loads(Path(path).read_text())


def find_run(client: MlflowClient, storage: Path, trial: str) -> str:
    """Return the run id of a trial given by Ray trial id or run name (e.g. ``c0001-seed0``)."""
    study = yaml.safe_load((storage / "study.yaml").read_text())
    experiment = client.get_experiment_by_name(study["name"])
    if experiment is None:
        raise ReplayError(f"no MLflow experiment {study['name']!r} in {client.tracking_uri}")
    # MLflow filters have no OR, so the two ways of naming a trial are two searches.
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.ray_trial_id = '{trial}'")
    runs = runs or client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{trial}'")
    if not runs:
        raise ReplayError(f"no trial {trial!r} in study {study['name']!r}; give a Ray trial id or a run name such as c0000-seed0")
    return runs[0].info.run_id


def check_data(run, manifest: dict[str, Any], bundle, allow_change: bool) -> list[str]:
    """Compare the rebuilt data with the recorded data; raise unless they match or it is allowed."""
    recorded_hash = run.data.tags.get("data_hash", manifest["data"]["content_hash"])
    if bundle.content_hash == recorded_hash:
        return []
    from study.manifest import file_digests

    study = manifest["study"]
    differences = file_differences(manifest["data"]["files"], file_digests(study["data"], study.get("data_root")))
    if not differences:
        differences = ["file contents are identical; modification times, image size or split membership differ"]
    message = (
        f"the data differs from what run {run.info.run_id} trained on "
        f"(recorded hash {recorded_hash[:12]}, now {bundle.content_hash[:12]}):\n  " + "\n  ".join(differences[:20])
    )
    if len(differences) > 20:
        message += f"\n  ... and {len(differences) - 20} more"
    if not allow_change:
        raise ReplayError(message + "\nrestore the recorded files, or pass --allow-data-change to replay anyway")
    logger.warning("%s", message)
    return differences


def replay(
    run_id: str,
    tracking_uri: str,
    allow_data_change: bool = False,
    data_root: str | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Re-run a recorded trial and return (recorded, replayed) final metrics."""
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if parent_id is None:
        raise ReplayError(f"run {run_id} is not a trial run (it has no parent study run)")
    config = TrialConfig.from_mapping(_load_json_artifact(client, run_id, TRIAL_CONFIG_ARTIFACT))
    manifest = _load_json_artifact(client, parent_id, MANIFEST_FILE)

    for difference in version_differences(manifest["versions"], package_versions()):
        logger.warning("version differs from the recorded run: %s", difference)

    study = manifest["study"]
    bundle = load_data(
        study["data"], image_size=study["image_size"], data_root=data_root or study.get("data_root")
    )
    check_data(run, manifest, bundle, allow_data_change)

    torch.set_num_threads(manifest.get("torch_threads_per_trial", 1))
    replayed: dict[str, float] = {}
    train_trial(config, bundle, report=lambda metrics, folder: replayed.update(metrics), device=torch.device("cpu"))
    recorded = {name: value for name, value in run.data.metrics.items() if name in replayed}
    return recorded, replayed


def same_value(first: float, second: float) -> bool:
    return first == second or (math.isnan(first) and math.isnan(second))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m study.replay", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", nargs="?", help="MLflow run id of a trial")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study folder's store)")
    parser.add_argument("--storage", help="study folder; with --trial, finds the run there")
    parser.add_argument("--trial", help="Ray trial id or run name (e.g. c0001-seed0) inside --storage")
    parser.add_argument("--data-root", help="folder replacing the dataset config's root")
    parser.add_argument("--allow-data-change", action="store_true", help="replay even if the data hash differs")
    args = parser.parse_args(argv)

    try:
        tracking_uri = args.tracking_uri
        if args.storage:
            storage = Path(args.storage).resolve()
            if not (storage / "study.yaml").is_file():
                raise ReplayError(f"no study in {storage} (missing study.yaml); check --storage")
            tracking_uri = tracking_uri or yaml.safe_load((storage / "study.yaml").read_text())["tracking_uri"]
        if not tracking_uri:
            raise ReplayError("give --tracking-uri, or --storage of the study folder")
        client = MlflowClient(tracking_uri=tracking_uri)
        run_id = args.run_id or (find_run(client, storage, args.trial) if args.storage and args.trial else None)
        if not run_id:
            raise ReplayError("give a run id, or --storage with --trial")
        recorded, replayed = replay(run_id, tracking_uri, args.allow_data_change, args.data_root)
    except ReplayError as error:
        parser.exit(2, f"error: {error}\n")

    differing = [name for name in sorted(recorded) if not same_value(recorded[name], replayed[name])]
    print(f"{'metric':<32} {'recorded':>12} {'replayed':>12}")
    for name in sorted(recorded):
        marker = "" if name not in differing else "  <- differs"
        print(f"{name:<32} {recorded[name]:>12.6f} {replayed[name]:>12.6f}{marker}")
    if differing:
        print(f"{len(differing)} of {len(recorded)} metrics differ from the recorded run")
        return 1
    print(f"all {len(recorded)} metrics identical to the recorded run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
