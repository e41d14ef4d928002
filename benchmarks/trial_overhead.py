"""Fixed cost of running a trial through Ray Tune, against the same training in-process.

    python -m benchmarks.trial_overhead                      # from the repository root
    python -m benchmarks.trial_overhead --image-size 64 --epochs 2 --trials 2

One training setting (``TrialConfig`` defaults with the given epochs, synthetic data at one size)
is timed four ways, one after another in this process:

    (a) in-process   ``train_trial`` called directly, with torch limited to one thread, as Ray
                     limits a trial that reserves 1 CPU
    (b) Tune trial   a minimal ``tune.Tuner`` over ``study.tuning.trainable`` (no searcher, no MLflow)
    (b') study of 1  ``study.run.main`` with one configuration: Optuna, MLflow and the report included
    (c) study of N   ``study.run.main`` with N configurations, N trials at once, 1 CPU each
    (d) study of M   ``study.run.main`` with M configurations run one after another, 1 CPU each;
                     Tune reuses the first trial's worker process for the others

Ray is started once (``ray.init``) before (b), and its start-up time is printed on its own line;
``study.run.main`` reuses the running runtime. The fixed overhead of a path is its wall time minus
the training time its longest trial reports (Tune's ``time_total_s``). That difference does not
move when other jobs slow the training down, unlike the wall time minus (a), which is printed too.
Its fraction of a 60 s trial is an extrapolation that assumes the overhead does not grow with the
trial's length. From (b') and (d), the fixed cost of each further trial in a running study is
((d) fixed - (b') fixed) / (M - 1): the study's start-up and report are paid once and drop out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from study.config import TrialConfig
from study.data import load_data
from study.driver import format_table
from study.models import build_model
from study.train import train_trial

# Trials of this length or longer should lose at most TARGET_FRACTION of their time to overhead.
REFERENCE_TRIAL_S = 60.0
TARGET_FRACTION = 0.03


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def time_in_process(config: TrialConfig, image_size: int) -> float:
    """Return the wall time of one ``train_trial`` call on one torch thread."""
    data = load_data("synthetic", image_size=image_size)
    # Build the model once first, so the timed call pays no one-off import or registry cost.
    build_model(config.architecture, config.encoder)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        train_trial(config, data, report=lambda metrics, folder: None)
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


def time_tune_trial(config: TrialConfig, image_size: int, folder: Path) -> tuple[float, float]:
    """Return (wall time of ``Tuner.fit``, the trial's own ``time_total_s``) for one Tune trial."""
    from ray import tune

    from study.tuning import trainable

    data = load_data("synthetic", image_size=image_size)
    runnable = tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1})
    tuner = tune.Tuner(
        runnable,
        param_space={"epochs": config.epochs},
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(name="single", storage_path=str(folder), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    result = results[0]
    if result.error:
        raise RuntimeError(f"the Tune trial failed: {result.error}")
    return wall, float(result.metrics["time_total_s"])


def trial_times(storage: Path, name: str) -> list[float]:
    """Return each trial's ``time_total_s`` from the last line of its Tune ``result.json``."""
    times = []
    for path in sorted((storage / "ray" / name).glob("trial_*/result.json")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        times.append(float(json.loads(lines[-1])["time_total_s"]))
    return times


def time_study(
    num_configs: int, epochs: int, image_size: int, folder: Path, log, concurrent: int | None = None
) -> tuple[float, list[float]]:
    """Return (wall time of ``study.run.main``, each trial's ``time_total_s``) for a loss_mix study."""
    from study.run import main

    concurrent = concurrent or num_configs
    name = f"overhead{num_configs}x{concurrent}"
    storage = folder / name
    argv = [
        "--space", "loss_mix", "--num-samples", str(num_configs), "--epochs", str(epochs),
        "--image-size", str(image_size), "--cpus-per-trial", "1", "--max-concurrent", str(concurrent),
        "--storage", str(storage), "--name", name,
    ]
    started = time.perf_counter()
    with contextlib.redirect_stdout(log):
        code = main(argv)
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"study.run.main {' '.join(argv)} exited with {code}; see {log.name}")
    return wall, trial_times(storage, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32, help="synthetic image side in pixels (default: 32)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per trial (default: 2)")
    parser.add_argument("--trials", type=int, default=2, help="N, the trials run at once in (c), 1 CPU each (default: 2)")
    parser.add_argument("--sequential", type=int, default=4, help="M, the trials run one after another in (d) (default: 4)")
    args = parser.parse_args()

    # Keep the table readable: the study's INFO lines and Tune's progress go to a log file.
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    config = TrialConfig(epochs=args.epochs)
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, torch {torch.__version__}")
    print(f"trial: {config.architecture} {config.encoder}, synthetic {args.image_size}px, {args.epochs} epochs, batch {config.batch_size}")

    with tempfile.TemporaryDirectory(prefix="lesion-overhead-") as name:
        folder = Path(name)
        in_process = time_in_process(config, args.image_size)

        import ray

        started = time.perf_counter()
        ray.init(address="local", num_cpus=max(args.trials, 1), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        try:
            with open(folder / "study.log", "w") as log:
                tune_wall, tune_inner = time_tune_trial(config, args.image_size, folder / "tune")
                one_wall, one_inner = time_study(1, args.epochs, args.image_size, folder, log)
                many_wall, many_inner = time_study(args.trials, args.epochs, args.image_size, folder, log)
                chain_wall, chain_inner = time_study(args.sequential, args.epochs, args.image_size, folder, log, concurrent=1)
        finally:
            ray.shutdown()

    rows = [
        {"path": "(a) train_trial in-process, 1 thread", "wall_s": in_process, "trial_s": in_process},
        {"path": "(b) one Tune trial (Tuner.fit)", "wall_s": tune_wall, "trial_s": tune_inner},
        {"path": "(b') study.run.main, 1 configuration", "wall_s": one_wall, "trial_s": max(one_inner)},
        {"path": f"(c) study.run.main, {args.trials} trials at once", "wall_s": many_wall, "trial_s": max(many_inner)},
        {"path": f"(d) study.run.main, {args.sequential} trials one after another", "wall_s": chain_wall, "trial_s": sum(chain_inner)},
    ]
    for row in rows:
        row["fixed_s"] = row["wall_s"] - row["trial_s"]
        row["wall_minus_a_s"] = row["wall_s"] - in_process
        row["fixed_of_trial"] = row["fixed_s"] / in_process
        row["fixed_of_60s_trial"] = row["fixed_s"] / REFERENCE_TRIAL_S
    print(f"\nray.init (once, not per trial): {ray_start:.2f} s")
    print("wall_s: the path's wall time; trial_s: Tune's time_total_s of its longest trial (the sum for (d); for (a), the wall time);")
    print("fixed_s: wall_s minus trial_s, time spent outside training (worker start, scheduling, searcher, MLflow, report);")
    print("wall_minus_a_s: wall_s minus (a), which also holds any slow-down of training itself;")
    print("fixed_of_trial: fixed_s / (a); fixed_of_60s_trial: fixed_s / 60 s, an extrapolation\n")
    columns = ["path", "wall_s", "trial_s", "fixed_s", "wall_minus_a_s", "fixed_of_trial", "fixed_of_60s_trial"]
    print(format_table(rows, columns))

    tune_row = rows[1]
    verdict = "meets" if tune_row["fixed_of_60s_trial"] <= TARGET_FRACTION else "misses"
    print(
        f"\nFixed overhead of a lone Tune trial: {tune_row['fixed_s']:.2f} s, "
        f"{tune_row['fixed_of_trial']:.1%} of this {in_process:.1f} s trial. Extrapolated to a 60 s trial it is "
        f"{tune_row['fixed_of_60s_trial']:.1%}, which {verdict} the {TARGET_FRACTION:.0%} target."
    )
    further = (rows[4]["fixed_s"] - rows[2]["fixed_s"]) / max(args.sequential - 1, 1)
    verdict = "meets" if further / REFERENCE_TRIAL_S <= TARGET_FRACTION else "misses"
    print(
        f"Fixed cost of each further trial in a study ((d) - (b')) / {max(args.sequential - 1, 1)}: {further:.2f} s, "
        f"{further / REFERENCE_TRIAL_S:.1%} of a 60 s trial, which {verdict} the {TARGET_FRACTION:.0%} target."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
