"""Reads a study's records back and derives the front between ID Dice and OoD specificity.

Nothing here imports Ray.
"""

from analysis.pareto import hypervolume, pareto_mask

__all__ = ["hypervolume", "pareto_mask"]
