"""Rerun the reference study's loss comparison on real data at CPU scale, then write its results page.

    LESION_STUDY_DATA=/path/to/data python -m experiments.reproduce
    LESION_STUDY_DATA=/path/to/data python -m experiments.reproduce --out /tmp/small \\
        --image-size kvasir_seg=32 fuseg=128 --epochs 1 --seeds 2 --mix-samples 2 --results /tmp/small/results.md

Four studies run one after another, each as its own ``python -m study.run`` process (so each
starts and stops its own Ray runtime and logs to its own MLflow store):

    <out>/kvasir_seg_paper     the paper space's five settings on Kvasir-SEG + lesion-free colon frames
    <out>/fuseg_paper          the same on FUSeg + healthy foot-skin patches
    <out>/kvasir_seg_loss_mix  the continuous CE weight, same budget per configuration
    <out>/fuseg_loss_mix

The settings come from experiments/configs/{paper,loss_mix}.yaml; the flags below override the
scale only. Each study's wall time and exit status go to <out>/timings.json. Running the command
again skips the studies that finished and resumes one that was interrupted, so a long run can be
continued after a crash or a reboot. The results page is then built from the MLflow records by
``experiments.results``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
DATASETS = ("kvasir_seg", "fuseg")
SPACES = ("paper", "loss_mix")
TIMINGS_FILE = "timings.json"


def study_name(space: str, dataset: str) -> str:
    return f"{dataset}_{space}"


def study_command(space: str, dataset: str, out: Path, args: argparse.Namespace, resume: bool) -> list[str]:
    """Return the ``study.run`` command line of one study; the flags set only what differs from the config."""
    name = study_name(space, dataset)
    command = [
        sys.executable, "-m", "study.run", "--config", str(CONFIGS / f"{space}.yaml"),
        "--data", dataset, "--name", name, "--storage", str(out / name),
    ]
    size = args.image_size.get(dataset, args.image_size.get("*")) if args.image_size else None
    for flag, value in (("--epochs", args.epochs), ("--image-size", size), ("--seeds", args.seeds)):
        if value is not None:
            command += [flag, str(value)]
    if space == "loss_mix" and args.mix_samples is not None:
        command += ["--num-samples", str(args.mix_samples)]
    if resume:
        command.append("--resume")
    return command


def read_timings(out: Path) -> dict:
    path = out / TIMINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_timings(out: Path, timings: dict) -> None:
    path = out / TIMINGS_FILE
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(timings, indent=2) + "\n")
    # The rename is atomic, so a crash mid-write leaves the previous file intact.
    scratch.replace(path)


def run_studies(out: Path, args: argparse.Namespace) -> int:
    """Run every study not yet finished; return the first non-zero exit status, or 0."""
    timings = read_timings(out)
    timings.setdefault("machine", {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
    })
    studies = timings.setdefault("studies", {})
    for space in SPACES:
        for dataset in args.datasets:
            name = study_name(space, dataset)
            if studies.get(name, {}).get("exit") == 0:
                print(f"{name}: finished before, skipped", flush=True)
                continue
            resume = (out / name / "study.yaml").is_file()
            command = study_command(space, dataset, out, args, resume)
            print(f"{name}: {' '.join(command)}", flush=True)
            started = time.perf_counter()
            with open(out / f"{name}.log", "a") as log:
                code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - started
            entry = studies.setdefault(name, {"wall_s": 0.0})
            entry.update({
                "space": space, "dataset": dataset, "command": command[1:], "exit": code,
                "wall_s": round(entry.get("wall_s", 0.0) + wall, 1),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            write_timings(out, timings)
            print(f"{name}: exit {code} after {wall / 60:.1f} min (log: {out / name}.log)", flush=True)
            if code != 0:
                return code
    return 0


def image_sizes(values: list[str] | None) -> dict[str, int]:
    """Parse ``--image-size`` items, ``N`` (every dataset) or ``DATASET=N``, into {dataset or "*": N}."""
    sizes: dict[str, int] = {}
    for item in values or []:
        dataset, _, number = item.rpartition("=")
        if dataset and dataset not in DATASETS:
            raise argparse.ArgumentTypeError(f"--image-size {item}: unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
        try:
            sizes[dataset or "*"] = int(number)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--image-size {item}: {number!r} is not a whole number of pixels") from None
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="studies/reproduce", help="folder of the four studies (default: studies/reproduce)")
    parser.add_argument("--results", default="docs/results.md", help="results page to write (default: docs/results.md)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="datasets to run (default: both)")
    parser.add_argument("--epochs", type=int, help="override the configs' epochs (4)")
    parser.add_argument(
        "--image-size", nargs="+", metavar="[DATASET=]N",
        help="override the configs' input side (128), for every dataset or per dataset, e.g. kvasir_seg=32 fuseg=128",
    )
    parser.add_argument("--seeds", type=int, help="override the configs' seeds per configuration (3)")
    parser.add_argument("--mix-samples", type=int, help="override the loss_mix configurations (2)")
    parser.add_argument("--no-results", action="store_true", help="run the studies only")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.image_size = image_sizes(args.image_size)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    code = run_studies(out, args)
    if code != 0:
        print(f"a study failed (exit {code}); fix the cause and rerun the same command to continue", file=sys.stderr)
        return code
    if args.no_results:
        return 0
    from experiments.results import write_results

    path = write_results(out, Path(args.results), datasets=args.datasets)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
