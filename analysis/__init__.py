"""Reads a study's records back and derives the front between ID Dice and OoD specificity.

``analysis.pareto`` has the front and hypervolume, ``analysis.records`` reads MLflow,
``analysis.stats`` the seed statistics, ``analysis.plots`` the figures, ``analysis.report`` the
report folder and ``analysis.reevaluate`` the evaluation of saved models on other data.
Nothing here imports Ray; ``python -m analysis --help`` lists the commands.
"""

from analysis.pareto import hypervolume, pareto_mask

__all__ = ["hypervolume", "pareto_mask"]
