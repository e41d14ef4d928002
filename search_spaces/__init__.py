"""Named search spaces. ``get_space(name)`` looks one up; ``SPACES`` lists them all."""

from __future__ import annotations

from search_spaces import architectures, loss_mix, loss_mix_lr, paper, schedules, seeds
from search_spaces.base import SAMPLERS, SearchSpace, build_sampler

SPACES: dict[str, SearchSpace] = {
    module.SPACE.name: module.SPACE for module in (loss_mix, loss_mix_lr, architectures, schedules, paper, seeds)
}

__all__ = ["SAMPLERS", "SPACES", "SearchSpace", "build_sampler", "get_space"]


def get_space(name: str) -> SearchSpace:
    """Return the space called ``name``.

    Raises:
        ValueError: on an unknown name; the message lists the valid ones.
    """
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; valid spaces are: {', '.join(SPACES)}")
    return SPACES[name]
