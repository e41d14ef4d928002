"""Seed statistics of a study: per-configuration intervals, the front, hypervolume and paired tests.

Every function takes the run table of ``analysis.records`` (one row per trial run) or the
configuration table built from it. The choices, in one place:

- A run counts when its status is FINISHED and both objectives are finite. Runs of any other
  status are excluded and counted in ``n_failed``; finished runs with a missing or NaN objective
  are excluded and counted in ``n_incomplete``.
- Seed spread: sample standard deviation (ddof=1) and a two-sided Student t interval,
  mean +- t(1 - alpha/2, n - 1) * std / sqrt(n). With n < 2 the interval is NaN.
- The front is taken on configuration means of the validation objectives, never on test metrics.
- ``p_front``: the share of bootstrap replicates in which a configuration is non-dominated. Each
  replicate resamples every configuration's runs with replacement, independently per
  configuration (configurations may have lost different seeds to failures), and recomputes the
  front on the resampled means. A configuration with one run never moves.
- Hypervolume uses a fixed reference point, (0, 0) unless given; its interval is the 2.5 and
  97.5 percentiles over the same kind of replicates.
- Paired tests compare two configurations of different loss families on runs with equal seeds:
  Wilcoxon signed-rank (two-sided) with 6 or more pairs, else the exact sign-flip permutation
  test on the mean difference. With n <= 5 pairs the smallest possible p is 2 / 2**n >= 0.0625,
  so such a test can never reach 0.05. P-values are Holm-corrected over every row of the table.

All bootstrap draws use ``numpy.random.default_rng(seed)`` with ``seed=0`` by default, so a
report is reproducible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.pareto import hypervolume, pareto_mask

# The study's two maximised objectives, in the order of study.train.OBJECTIVES.
OBJECTIVES = ("id_dice", "ood_specificity")
# Companion metrics summarised next to the objectives, when the run table contains them.
COMPANIONS = (
    "id_iou", "ood_fp_burden", "ood_specificity_area10", "auroc_max_prob", "auroc_area",
    "reference_dice", "reference_empty_fraction",
)
TEST_PREFIX = "test_"
# Columns describing a configuration (the same for all its seeds).
CONFIG_COLUMNS = (
    "loss_family", "loss_setting", "architecture", "encoder", "ce_weight", "loss_schedule",
    "dice_variant", "finetune_fraction", "region_loss", "ce_loss",
)
CONFIDENCE = 0.95
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 0
DEFAULT_REFERENCE = (0.0, 0.0)
# Below this many seed pairs the paired test is the exact sign-flip permutation test.
WILCOXON_MIN_PAIRS = 6
SIGNIFICANCE = 0.05


class AnalysisError(ValueError):
    """Inputs to the statistics that break a stated rule (wrong objectives, missing columns)."""


def check_objectives(objectives: Sequence[str], columns=None) -> tuple[str, str]:
    """Return ``objectives`` as a pair, checking there are exactly two and ``columns`` has them."""
    objectives = tuple(objectives)
    if len(objectives) != 2:
        raise AnalysisError(
            f"expected exactly 2 objectives (both maximised), got {len(objectives)}: {list(objectives)}; "
            f"the front and hypervolume are defined for two, e.g. {list(OBJECTIVES)}"
        )
    if columns is not None:
        missing = [name for name in objectives if name not in columns]
        if missing:
            raise AnalysisError(f"objectives {missing} are not columns of the run table; it has {sorted(columns)}")
    return objectives  # type: ignore[return-value]


def check_reference(reference: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(value) for value in reference)
    if len(values) != 2 or any(math.isnan(value) for value in values):
        raise AnalysisError(f"the hypervolume reference point must be two numbers, got {list(reference)}")
    return values  # type: ignore[return-value]


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, int, float, float]:
    """Return (mean, std, n, low, high) of the non-NaN ``values`` with a Student t interval.

    ``std`` is the sample standard deviation (ddof=1). With n < 2 the std and bounds are NaN;
    with n = 0 the mean is NaN too. Example: [1, 2, 3] gives mean 2, std 1 and
    2 +- 4.3027 / sqrt(3).
    """
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    n = int(array.size)
    if n == 0:
        return math.nan, math.nan, 0, math.nan, math.nan
    mean = float(array.mean())
    if n < 2:
        return mean, math.nan, 1, math.nan, math.nan
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, n, mean - half, mean + half


def usable_mask(runs: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.Series:
    """True for runs that count: status FINISHED and both objectives finite."""
    objectives = check_objectives(objectives)
    if runs.empty:
        return pd.Series(dtype=bool)
    finished = runs["status"] == "FINISHED"
    finite = pd.Series(True, index=runs.index)
    for name in objectives:
        values = pd.to_numeric(runs[name], errors="coerce") if name in runs else pd.Series(np.nan, index=runs.index)
        finite &= np.isfinite(values.astype(float))
    return finished & finite


def summary_metrics(runs: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> list[str]:
    """The metrics a configuration table summarises: objectives, companions, then their test values."""
    names = list(objectives) + [name for name in COMPANIONS if name not in objectives]
    names += [TEST_PREFIX + name for name in names if not name.startswith(TEST_PREFIX)]
    return list(dict.fromkeys(name for name in names if name in runs.columns))


def aggregate_configurations(
    runs: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    metrics: Sequence[str] | None = None,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Summarise the seeds of each configuration: one row per ``config_id``.

    Columns: ``config_id``, the describing settings (``CONFIG_COLUMNS`` present in ``runs``),
    ``n`` (counted runs), ``n_failed``, ``n_incomplete``, ``seeds`` (counted seeds, as text),
    ``completed_at`` (the last end time of its runs), and for each metric ``<m>_mean``,
    ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high`` over the counted runs, NaN values skipped.
    """
    objectives = check_objectives(objectives)
    if runs.empty:
        columns = ["config_id", "loss_family", "n", "n_failed", "n_incomplete", "seeds", "completed_at"]
        columns += [f"{name}_{part}" for name in objectives for part in ("mean", "std", "ci_low", "ci_high")]
        return pd.DataFrame(columns=columns)
    check_objectives(objectives, runs.columns)
    metrics = list(metrics) if metrics is not None else summary_metrics(runs, objectives)
    usable = usable_mask(runs, objectives)
    finished = runs["status"] == "FINISHED"
    describing = [name for name in CONFIG_COLUMNS if name in runs.columns]

    rows = []
    for config_id, group in runs.groupby("config_id", sort=True):
        counted = group[usable.loc[group.index]]
        row = {"config_id": config_id, **{name: group[name].iloc[0] for name in describing}}
        row["n"] = len(counted)
        row["n_failed"] = int((~finished.loc[group.index]).sum())
        row["n_incomplete"] = int((finished & ~usable).loc[group.index].sum())
        row["seeds"] = ",".join(str(seed) for seed in sorted(counted["seed"])) if "seed" in counted else ""
        row["completed_at"] = group["end_time"].max() if "end_time" in group else pd.NaT
        for name in metrics:
            values = pd.to_numeric(counted[name], errors="coerce") if name in counted else []
            mean, std, _, low, high = t_interval(values, confidence)
            row.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_ci_low": low, f"{name}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def objective_means(configurations: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> np.ndarray:
    """Return the (k, 2) array of configuration means of the two objectives."""
    objectives = check_objectives(objectives)
    if configurations.empty:
        return np.empty((0, 2))
    return configurations[[f"{name}_mean" for name in objectives]].to_numpy(dtype=float)


def _run_values(
    runs: pd.DataFrame, config_ids: Sequence[str], objectives: Sequence[str]
) -> list[np.ndarray]:
    """Return, per configuration, the (n, 2) objective values of its counted runs."""
    counted = runs[usable_mask(runs, objectives)] if not runs.empty else runs
    values = []
    for config_id in config_ids:
        group = counted[counted["config_id"] == config_id] if not counted.empty else counted
        values.append(group[list(objectives)].to_numpy(dtype=float) if len(group) else np.empty((0, 2)))
    return values


def bootstrap_means(
    runs: pd.DataFrame,
    config_ids: Sequence[str],
    objectives: Sequence[str] = OBJECTIVES,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """Return (replicates, k, 2) resampled configuration means; NaN for configurations without runs.

    Each configuration's counted runs are resampled with replacement, independently of the
    others, with ``numpy.random.default_rng(seed)``.
    """
    objectives = check_objectives(objectives)
    rng = np.random.default_rng(seed)
    means = np.full((replicates, len(config_ids), 2), np.nan)
    for index, values in enumerate(_run_values(runs, config_ids, objectives)):
        if len(values) == 0:
            continue
        draws = rng.integers(0, len(values), size=(replicates, len(values)))
        means[:, index] = values[draws].mean(axis=1)
    return means


def front_probability(
    runs: pd.DataFrame,
    config_ids: Sequence[str],
    objectives: Sequence[str] = OBJECTIVES,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """Return each configuration's share of bootstrap replicates in which it is non-dominated.

    A configuration without counted runs gets NaN. A sole configuration gets 1; one whose every
    run is dominated by every run of another gets 0.
    """
    means = bootstrap_means(runs, config_ids, objectives, replicates, seed)
    counts = np.zeros(len(config_ids))
    for replicate in means:
        counts += pareto_mask(replicate)
    probability = counts / replicates
    has_runs = np.array([len(values) > 0 for values in _run_values(runs, config_ids, objectives)], dtype=bool)
    probability[~has_runs] = np.nan
    return probability


def add_front(
    configurations: pd.DataFrame,
    runs: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Add ``front`` (non-dominated on the means) and ``p_front`` to a configuration table."""
    table = configurations.copy()
    if table.empty:
        table["front"] = pd.Series(dtype=bool)
        table["p_front"] = pd.Series(dtype=float)
        return table
    table["front"] = pareto_mask(objective_means(table, objectives))
    table["p_front"] = front_probability(runs, list(table["config_id"]), objectives, replicates, seed)
    return table


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def hypervolume_table(
    configurations: pd.DataFrame,
    runs: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    reference: Sequence[float] = DEFAULT_REFERENCE,
    group_by: str = "loss_family",
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Hypervolume of the configuration means, overall ("all") and per ``group_by`` value.

    Columns: ``group``, ``configurations``, ``hypervolume`` (on the means), ``ci_low`` and
    ``ci_high`` (bootstrap percentiles over seed resampling), ``reference_<objective>``.
    """
    objectives = check_objectives(objectives)
    reference = check_reference(reference)
    columns = ["group", "configurations", "hypervolume", "ci_low", "ci_high"]
    columns += [f"reference_{name}" for name in objectives]
    if configurations.empty:
        return pd.DataFrame(columns=columns)

    config_ids = list(configurations["config_id"])
    points = objective_means(configurations, objectives)
    resampled = bootstrap_means(runs, config_ids, objectives, replicates, seed)
    groups = [("all", np.ones(len(config_ids), dtype=bool))]
    if group_by in configurations:
        labels = configurations[group_by].astype(str).to_numpy()
        groups += [(label, labels == label) for label in sorted(set(labels))]

    rows = []
    for label, members in groups:
        replicate_volumes = np.array([hypervolume(replicate[members], reference) for replicate in resampled])
        low, high = _percentiles(replicate_volumes, confidence)
        rows.append(
            [label, int(members.sum()), hypervolume(points[members], reference), low, high, *reference]
        )
    return pd.DataFrame(rows, columns=columns)


def convergence(
    configurations: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    reference: Sequence[float] = DEFAULT_REFERENCE,
) -> pd.DataFrame:
    """Hypervolume of the front of the first k configurations, in order of completion.

    A configuration completes when its last run ends (``completed_at``). Columns:
    ``completed`` (k), ``config_id`` (the k-th), ``hypervolume``.
    """
    reference = check_reference(reference)
    if configurations.empty:
        return pd.DataFrame(columns=["completed", "config_id", "hypervolume"])
    order = configurations.sort_values(["completed_at", "config_id"], kind="stable", na_position="last")
    points = objective_means(order, objectives)
    volumes = [hypervolume(points[: k + 1], reference) for k in range(len(points))]
    return pd.DataFrame(
        {"completed": np.arange(1, len(points) + 1), "config_id": list(order["config_id"]), "hypervolume": volumes}
    )


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and do not count as tests.

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def sign_flip_test(differences) -> float:
    """Exact two-sided sign-flip permutation p-value for a mean paired difference of zero.

    Enumerates all 2**n sign vectors; p is the share whose |sum| is at least the observed |sum|.
    Example: differences [1, 2, 3] give sums with |sum| >= 6 in 2 of 8 vectors, p = 0.25.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    sums = np.abs(signs @ d)
    observed = abs(d.sum())
    # A tolerance so that sums equal to the observed one in exact arithmetic count as extreme.
    tolerance = 1e-12 * max(1.0, float(np.abs(d).sum()))
    return float(np.mean(sums >= observed - tolerance))


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation: (R+ - R-) / (R+ + R-) over the non-zero |d| ranks.

    +1 when every non-zero difference is positive, -1 when every one is negative; 0 when there
    is no non-zero difference.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return 0.0
    ranks = scipy_stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_test(differences) -> tuple[str, float, float]:
    """Return (test name, statistic, two-sided p) for paired differences (see module docstring)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return "none", math.nan, math.nan
    if d.size < WILCOXON_MIN_PAIRS:
        return "sign-flip permutation (exact)", float(d.mean()), sign_flip_test(d)
    if np.all(d == 0):
        return "wilcoxon signed-rank", 0.0, 1.0
    result = scipy_stats.wilcoxon(d, alternative="two-sided")
    return "wilcoxon signed-rank", float(result.statistic), float(result.pvalue)


COMPARISON_COLUMNS = [
    "objective", "config_a", "family_a", "config_b", "family_b", "n_pairs", "seeds",
    "mean_a", "mean_b", "mean_difference", "rank_biserial", "test", "statistic", "p_value", "p_holm",
    "significant",
]


def compare_families(
    runs: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    family_column: str = "loss_family",
    alpha: float = SIGNIFICANCE,
) -> pd.DataFrame:
    """Paired seed-by-seed comparisons of every two configurations from different loss families.

    Runs of configuration a and b are paired when their seeds are equal and both count; the
    difference is a - b, so a positive ``mean_difference`` favours a (objectives are maximised).
    Pairs of configurations from the same family are not compared (those differ in
    hyperparameters, not in the loss family). ``p_holm`` is Holm-corrected over all rows, and
    ``significant`` is ``p_holm < alpha``.
    """
    objectives = check_objectives(objectives)
    if runs.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    counted = runs[usable_mask(runs, objectives)]
    families = counted.groupby("config_id")[family_column].first().to_dict() if not counted.empty else {}

    rows = []
    for config_a, config_b in itertools.combinations(sorted(families), 2):
        if families[config_a] == families[config_b]:
            continue
        a = counted[counted["config_id"] == config_a].drop_duplicates("seed").set_index("seed")
        b = counted[counted["config_id"] == config_b].drop_duplicates("seed").set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        for name in objectives:
            values_a = a.loc[seeds, name].to_numpy(dtype=float)
            values_b = b.loc[seeds, name].to_numpy(dtype=float)
            differences = values_a - values_b
            test, statistic, p_value = paired_test(differences)
            rows.append({
                "objective": name, "config_a": config_a, "family_a": families[config_a],
                "config_b": config_b, "family_b": families[config_b], "n_pairs": len(seeds),
                "seeds": ",".join(str(seed) for seed in seeds),
                "mean_a": float(values_a.mean()) if seeds else math.nan,
                "mean_b": float(values_b.mean()) if seeds else math.nan,
                "mean_difference": float(differences.mean()) if seeds else math.nan,
                "rank_biserial": rank_biserial(differences) if seeds else math.nan,
                "test": test, "statistic": statistic, "p_value": p_value,
            })
    table = pd.DataFrame(rows, columns=[column for column in COMPARISON_COLUMNS if column not in ("p_holm", "significant")])
    table["p_holm"] = holm(table["p_value"].to_numpy(dtype=float)) if len(table) else []
    table["significant"] = table["p_holm"] < alpha
    return table
