"""Seed-aware search: each suggested configuration runs under K seeds; Optuna sees their mean.

Ray's ``Repeater`` does the same for one metric only, and ``OptunaSearch`` tells Optuna that a
trial which raised after reporting some epochs is COMPLETE, with its last result (Ray 2.60). This searcher averages every
objective, and tells Optuna a configuration failed when any of its seeds failed or produced a
non-finite objective, so Optuna never stores a NaN value or a partial result.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


@dataclass
class _Group:
    """The seeds of one configuration and what each has returned so far."""

    config: dict[str, Any]
    pending_seeds: list[int]
    searcher_key: str
    results: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    failed: dict[int, bool] = field(default_factory=dict)


class SeedGroupSearcher(Searcher):
    """Wrap an ``OptunaSearch`` so every configuration is evaluated under several seeds.

    Args:
        inner: the Optuna searcher; its define-by-run space must return a ``config_id``.
        objectives: result keys of the objectives, in Optuna's order.
        seeds: the trial seeds each configuration runs under; K seeds make K Ray trials.
        base_config: settings shared by every trial (epochs, batch size, ...); the space's
            sampled and fixed settings override them.
    """

    def __init__(
        self,
        inner: OptunaSearch,
        objectives: list[str],
        seeds: list[int],
        base_config: dict[str, Any],
    ) -> None:
        super().__init__(metric=None, mode=None)
        if not seeds:
            raise ValueError("SeedGroupSearcher needs at least one seed")
        self._inner = inner
        self._objectives = list(objectives)
        self._seeds = list(seeds)
        self._base_config = dict(base_config)
        self._groups: dict[str, _Group] = {}
        self._trial_groups: dict[str, tuple[str, int]] = {}
        self._open_group: str | None = None

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # The inner searcher already has its space, metrics and modes.
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._open_group is None or not self._groups[self._open_group].pending_seeds:
            # Ask Optuna for a new configuration, keyed by the Ray id of its first seed's trial.
            params = self._inner.suggest(trial_id)
            if params is None or params == Searcher.FINISHED:
                return params
            config_id = params["config_id"]
            self._groups[config_id] = _Group(
                config={**self._base_config, **params},
                pending_seeds=list(self._seeds),
                searcher_key=trial_id,
            )
            self._open_group = config_id

        group = self._groups[self._open_group]
        seed = group.pending_seeds.pop(0)
        self._trial_groups[trial_id] = (self._open_group, seed)
        return {**group.config, "seed": seed}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._trial_groups:
            return
        config_id, seed = self._trial_groups[trial_id]
        group = self._groups[config_id]
        group.results[seed] = result
        group.failed[seed] = error
        if len(group.results) < len(self._seeds):
            return

        # Every seed has finished: tell Optuna the mean, or a failure.
        values = self._mean_objectives(group)
        if values is None:
            # NOTE: when a seed fails because its Ray node died and --resume later completes it
            # from a checkpoint, Optuna keeps this FAIL; MLflow and the analysis count the run.
            logger.warning("configuration %s failed in at least one seed; Optuna records it as FAIL", config_id)
            self._inner.on_trial_complete(group.searcher_key, result=None, error=True)
        else:
            self._inner.on_trial_complete(group.searcher_key, result=values)

    def _mean_objectives(self, group: _Group) -> dict[str, float] | None:
        """Return each objective's mean over seeds, or None when any seed has no finite value."""
        if any(group.failed.values()):
            return None
        means = {}
        for name in self._objectives:
            values = [(result or {}).get(name) for result in group.results.values()]
            if any(value is None or not math.isfinite(value) for value in values):
                return None
            means[name] = sum(values) / len(values)
        return means

    def save(self, checkpoint_path: str) -> None:
        state = self.__dict__.copy()
        state["_inner"] = self._inner.__dict__.copy()
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            state = pickle.load(file)
        self._inner.__dict__.update(state.pop("_inner"))
        self.__dict__.update({key: value for key, value in state.items() if key != "_inner"})
