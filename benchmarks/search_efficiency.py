"""Hypervolume of the loss_mix front after each finished trial, per Optuna sampler and sampler seed.

    python -m benchmarks.search_efficiency                     # from the repository root
    python -m benchmarks.search_efficiency --num-configs 24 --search-seeds 5 --epochs 4 --image-size 64

Every sampler runs the loss_mix space (CE weight in [0, 1] and the Dice variant) on the embedded
synthetic data for ``--num-configs`` configurations, once per search seed (``--sampler-seed``,
``--sampler-seed`` + 1, ...). Each study is a ``study.run.main`` call in one shared local Ray
runtime, so Ray starts once. The samplers:

    tpe     multi-objective TPE (the space's own sampler)
    random  uniform random
    nsga2   NSGA-II, population 8
    grid    a grid of ``--grid-points`` evenly spaced CE weights with per-image Dice, in random
            order per seed; it runs min(``--num-configs``, ``--grid-points``) configurations

tpe, random and nsga2 first run the space's three initial points (CE weight 0, 1 and 0.5), so
they differ only from the fourth configuration on. With the defaults (8 configurations), TPE
models the objectives from its fifth and NSGA-II breeds only after its first population of 8,
so NSGA-II then behaves like random search.

After each study, the Optuna storage gives the completed configurations in order of completion.
The hypervolume (``analysis.pareto.hypervolume``, reference point (0, 0)) of their front after
each one is the sampler's curve. The target is 95% of the largest hypervolume any sampler found
under any seed. Trial training is nearly deterministic for a given configuration and seed, so
the samplers differ by which configurations they try.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

import search_spaces
from analysis.pareto import hypervolume
from search_spaces.base import SearchSpace
from study.driver import format_table
from study.train import OBJECTIVES

SAMPLERS = ("tpe", "random", "nsga2", "grid")
GRID_SPACE = "loss_mix_grid"
TARGET_FRACTION = 0.95


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def sample_ce_weight(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("ce_weight", 0.0, 1.0)
    return {}


def register_grid_space(points: int) -> None:
    """Add a grid over the CE weight (per-image Dice) to the spaces ``study.run`` can find."""
    weights = [round(value, 4) for value in np.linspace(0.0, 1.0, points)]
    search_spaces.SPACES[GRID_SPACE] = SearchSpace(
        name=GRID_SPACE,
        description=f"{points} evenly spaced CE weights with per-image soft Dice",
        sample=sample_ce_weight,
        fixed={"dice_variant": "per_image"},
        sampler="grid",
        grid={"ce_weight": weights},
    )


def study_argv(sampler: str, seed: int, args: argparse.Namespace, storage: Path) -> list[str]:
    if sampler == "grid":
        space, configs, override = GRID_SPACE, min(args.num_configs, args.grid_points), []
    else:
        space, configs, override = "loss_mix", args.num_configs, ["--sampler", sampler]
    return [
        "--space", space, *override, "--sampler-seed", str(seed), "--num-samples", str(configs),
        "--epochs", str(args.epochs), "--image-size", str(args.image_size),
        "--storage", str(storage), "--name", f"{sampler}_seed{seed}",
    ]


def hypervolume_curve(storage: Path) -> list[float]:
    """Return the front's hypervolume after each completed configuration, in completion order."""
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{storage / 'optuna.db'}")
    done = [trial for trial in study.get_trials(deepcopy=False) if trial.state == optuna.trial.TrialState.COMPLETE]
    done.sort(key=lambda trial: trial.datetime_complete)
    points = [trial.values for trial in done]
    return [hypervolume(points[: count + 1]) for count in range(len(points))]


def trials_to_reach(curve: list[float], target: float) -> int | None:
    """Return the 1-based count of configurations after which ``curve`` reaches ``target``."""
    for index, value in enumerate(curve):
        if value >= target:
            return index + 1
    return None


def summarise(curves: dict[str, list[list[float]]], best: float) -> list[dict[str, Any]]:
    target = TARGET_FRACTION * best
    rows = []
    for sampler, runs in curves.items():
        reached = [trials_to_reach(curve, target) for curve in runs]
        hits = [count for count in reached if count is not None]
        rows.append(
            {
                "sampler": sampler,
                "seeds": len(runs),
                "configs": max(len(curve) for curve in runs),
                "final_hv_mean": float(np.mean([curve[-1] if curve else 0.0 for curve in runs])),
                "final_hv_min": float(min(curve[-1] if curve else 0.0 for curve in runs)),
                "trials_to_95%_mean": float(np.mean(hits)) if hits else math.nan,
                "never_reached": len(runs) - len(hits),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS), help="samplers to compare (default: all)")
    parser.add_argument("--num-configs", type=int, default=8, help="configurations per study, K (default: 8)")
    parser.add_argument("--search-seeds", type=int, default=3, help="studies per sampler, S, each with its own sampler seed (default: 3)")
    parser.add_argument("--sampler-seed", type=int, default=0, help="sampler seed of the first study; the others count up (default: 0)")
    parser.add_argument("--grid-points", type=int, default=5, help="CE weights in the grid (default: 5)")
    # With 1 epoch at 32 px, a measured TPE study of 8 configurations kept a hypervolume of 0 throughout.
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per trial (default: 2)")
    parser.add_argument("--image-size", type=int, default=32, help="synthetic image side in pixels (default: 32)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs given to Ray; 1 per trial (default: all)")
    parser.add_argument("--keep", help="folder to keep the study folders in (default: a temporary folder, deleted)")
    args = parser.parse_args()

    # The studies' INFO lines and Tune's progress go to a log file beside the study folders.
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    register_grid_space(args.grid_points)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lesion-search-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print(f"studies: {args.samplers} x seeds {args.sampler_seed}..{args.sampler_seed + args.search_seeds - 1}, "
          f"{args.num_configs} configurations, {args.epochs} epochs at {args.image_size}px; log {root / 'studies.log'}")

    import ray

    from study.run import main as run_study

    started = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    curves: dict[str, list[list[float]]] = {sampler: [] for sampler in args.samplers}
    walls: dict[str, list[float]] = {sampler: [] for sampler in args.samplers}
    failures: dict[str, list[str]] = {sampler: [] for sampler in args.samplers}
    try:
        with open(root / "studies.log", "w") as log:
            for seed in range(args.sampler_seed, args.sampler_seed + args.search_seeds):
                for sampler in args.samplers:
                    storage = root / f"{sampler}_seed{seed}"
                    study_started = time.perf_counter()
                    try:
                        with contextlib.redirect_stdout(log):
                            code = run_study(study_argv(sampler, seed, args, storage))
                    except Exception as error:  # noqa: BLE001 - one failed study must not end the comparison
                        failures[sampler].append(f"seed {seed}: {type(error).__name__}: {error}")
                        print(f"  {sampler:<6} seed {seed}: failed: {failures[sampler][-1]}", flush=True)
                        continue
                    walls[sampler].append(time.perf_counter() - study_started)
                    curves[sampler].append(hypervolume_curve(storage))
                    print(f"  {sampler:<6} seed {seed}: exit {code}, {walls[sampler][-1]:.0f} s, "
                          f"hypervolume by trial {[round(value, 4) for value in curves[sampler][-1]]}", flush=True)
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    best = max((value for runs in curves.values() for curve in runs for value in curve), default=0.0)
    rows = summarise({sampler: runs for sampler, runs in curves.items() if runs}, best)
    rows += [{"sampler": sampler, "seeds": 0} for sampler, runs in curves.items() if not runs]
    for row in rows:
        row["failed_studies"] = len(failures[row["sampler"]])
        row["study_wall_s_mean"] = float(np.mean(walls[row["sampler"]])) if walls[row["sampler"]] else math.nan
    print(f"\nbest hypervolume over all studies: {best:.4f}; target {TARGET_FRACTION:.0%} of it: {TARGET_FRACTION * best:.4f}")
    print(f"objectives {OBJECTIVES}, reference point (0, 0); total {time.perf_counter() - started:.0f} s\n")
    print(format_table(rows, ["sampler", "seeds", "configs", "final_hv_mean", "final_hv_min", "trials_to_95%_mean", "never_reached", "failed_studies", "study_wall_s_mean"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
