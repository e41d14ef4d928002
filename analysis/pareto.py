"""Pareto front and hypervolume for two maximised objectives.

Contract: points are rows of an (n, 2) array, both columns maximised. Rows holding a NaN are
never on the front. Exact duplicates are both kept when they are non-dominated, and a point
that ties another on one objective and is worse on the other is dominated.
"""

from __future__ import annotations

import numpy as np


def _as_points(points) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2) for two objectives, got shape {array.shape}")
    return array


def pareto_mask(points) -> np.ndarray:
    """Return a boolean mask of the non-dominated rows of ``points`` (both objectives maximised).

    Runs in O(n log n): exact duplicates are merged first, the unique points are sorted by the
    first objective descending (ties by the second descending), and a point is non-dominated
    when its second objective beats the best second objective of every point before it.
    """
    array = _as_points(points)
    mask = np.zeros(len(array), dtype=bool)
    valid = np.flatnonzero(~np.isnan(array).any(axis=1))
    if valid.size == 0:
        return mask

    unique, inverse = np.unique(array[valid], axis=0, return_inverse=True)
    order = np.lexsort((-unique[:, 1], -unique[:, 0]))
    second = unique[order, 1]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(second)[:-1]))
    unique_front = np.zeros(len(unique), dtype=bool)
    unique_front[order] = second > best_before
    mask[valid] = unique_front[inverse.ravel()]
    return mask


def hypervolume(points, reference=(0.0, 0.0)) -> float:
    """Return the area dominated by ``points`` and bounded below by ``reference``.

    Points that do not strictly dominate the reference add nothing; NaN rows are ignored.
    """
    array = _as_points(points)
    reference = np.asarray(reference, dtype=float)
    array = array[~np.isnan(array).any(axis=1)]
    array = array[(array > reference).all(axis=1)]
    if len(array) == 0:
        return 0.0

    front = array[pareto_mask(array)]
    front = np.unique(front, axis=0)
    # Sorted by the first objective descending, the second rises strictly along the front.
    front = front[np.argsort(-front[:, 0])]
    widths = front[:, 0] - np.append(front[1:, 0], reference[0])
    heights = front[:, 1] - reference[1]
    return float(np.sum(widths * heights))
