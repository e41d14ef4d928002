"""Time the front and hypervolume of random 2-objective point sets, single process.

    python -m benchmarks.analysis_scale            # 1e3, 1e4, 1e5, 1e6 points, from the repository root
    python -m benchmarks.analysis_scale --sizes 1000 100000 --repeats 5

Points are uniform in [0, 1]^2 (seed 0); each size is timed ``--repeats`` times and the best
time is printed. Results are recorded in docs/benchmarks.md, "Analysis scale".
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.pareto import hypervolume, pareto_mask


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"{'points':>10}  {'front size':>10}  {'pareto_mask s':>13}  {'hypervolume s':>13}")
    for size in args.sizes:
        points = rng.random((size, 2))
        front = int(pareto_mask(points).sum())
        mask_s = best_time(lambda: pareto_mask(points), args.repeats)
        volume_s = best_time(lambda: hypervolume(points), args.repeats)
        print(f"{size:>10}  {front:>10}  {mask_s:>13.4f}  {volume_s:>13.4f}")


if __name__ == "__main__":
    main()
