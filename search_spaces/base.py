"""Named search spaces and the Optuna samplers they run with.

A space only describes what to try: it never trains or tracks. It is a define-by-run function
over an ``optuna.Trial`` (so parameters can be conditional), the constant settings it fixes,
the points Optuna tries first, and the sampler it is designed for.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

SAMPLERS = ("tpe", "nsga2", "random", "grid")

# A define-by-run function: calls ``trial.suggest_*`` and returns settings derived from them.
SampleFn = Callable[[optuna.Trial], dict[str, Any]]


@dataclass(frozen=True)
class SearchSpace:
    """A named space of trial settings.

    Attributes:
        name: the ``--space`` value.
        description: one line shown by ``--list-spaces``.
        sample: define-by-run function; every ``trial.suggest_*`` name becomes a trial setting.
        fixed: constant trial settings (e.g. optimiser, architecture); study flags override them
            only where the space leaves them unset.
        initial_points: parameter sets enqueued before the sampler's own suggestions.
        sampler: the sampler the space is designed for, one of ``SAMPLERS``.
        grid: for the "grid" sampler, the values of each suggested parameter.
    """

    name: str
    description: str
    sample: SampleFn
    fixed: Mapping[str, Any] = field(default_factory=dict)
    initial_points: Sequence[Mapping[str, Any]] = ()
    sampler: str = "tpe"
    grid: Mapping[str, Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"space {self.name!r}: sampler {self.sampler!r} is invalid; expected one of {SAMPLERS}")
        if self.sampler == "grid" and not self.grid:
            raise ValueError(f"space {self.name!r}: the grid sampler needs a non-empty grid")

    @property
    def grid_size(self) -> int | None:
        """Return the number of grid points, or None for a space without a grid."""
        if not self.grid:
            return None
        return math.prod(len(values) for values in self.grid.values())


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II whose internal lock is rebuilt after unpickling.

    Ray Tune pickles the searcher, and with it the sampler, into every experiment checkpoint;
    optuna 5.1's NSGAIISampler keeps a ``threading.Lock`` in ``_thread_lock``, which cannot be
    pickled.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def build_sampler(space: SearchSpace, sampler: str | None, seed: int) -> optuna.samplers.BaseSampler:
    """Build the Optuna sampler for ``space``; ``sampler`` overrides the space's own choice.

    Raises:
        ValueError: on an unknown sampler name, or "grid" for a space that has no grid.
    """
    name = sampler or space.sampler
    if name == "tpe":
        # Optuna's TPE handles several objectives itself (MOTPE).
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    if name == "nsga2":
        return PicklableNSGAIISampler(seed=seed, population_size=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if not space.grid:
            raise ValueError(
                f"--sampler grid needs a space with a grid; space {space.name!r} has none "
                f"(use one of {SAMPLERS[:-1]})"
            )
        return optuna.samplers.GridSampler(dict(space.grid), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS}")
