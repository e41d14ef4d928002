"""Wall time of the default study, ``python -m study.run --space loss_mix``, run as a user runs it.

    python -m benchmarks.default_study                     # from the repository root
    python -m benchmarks.default_study --keep /tmp/loss_mix

The command runs as a subprocess with every default (8 configurations, 4 epochs, 64 px synthetic
data, 1 CPU per trial, as many trials at once as there are CPUs). Only ``--storage`` is added, so
the study folder goes to a temporary folder (deleted afterwards) instead of ./studies/loss_mix.
The wall time covers everything a user waits for: Python start, imports, Ray start-up, the trials
and the report.

``RAY_ADDRESS=local`` is set for the subprocess. Without it, ``ray.init()`` joins a Ray cluster
already running on this machine (one started with ``ray start``) instead of starting its own, and
the study would then share, and time, somebody else's cluster.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from study.driver import format_table

TARGET_S = 600.0  # the default study should finish within 10 minutes on 2 CPU cores


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="study folder to write and keep (default: a temporary folder, deleted)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lesion-default-"))
    storage = Path(args.keep) if args.keep else root / "loss_mix"
    command = [sys.executable, "-m", "study.run", "--space", "loss_mix", "--storage", str(storage)]
    log_path = root / "study.log"
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print(f"command: {' '.join(command)}")

    try:
        with open(log_path, "w") as log:
            started = time.perf_counter()
            environment = {**os.environ, "RAY_ADDRESS": "local"}
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment, check=False).returncode
            wall = time.perf_counter() - started
        output = log_path.read_text(errors="replace").splitlines()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # The study prints its Pareto front last; show it so a reader sees what the time bought.
    if "Pareto front" in "\n".join(output):
        start = max(index for index, line in enumerate(output) if line.startswith("Pareto front"))
        print("\n".join(output[start:start + 12]))
    else:
        print("\n".join(output[-20:]))

    row = {"command": "python -m study.run --space loss_mix", "exit": code, "wall_s": wall, "wall_min": wall / 60, "target_s": TARGET_S}
    print()
    print(format_table([row], ["command", "exit", "wall_s", "wall_min", "target_s"]))
    verdict = "within" if wall <= TARGET_S and code == 0 else "not within"
    print(f"\nThe default study took {wall:.0f} s, {verdict} the {TARGET_S / 60:.0f}-minute target.")
    return code


if __name__ == "__main__":
    sys.exit(main())
