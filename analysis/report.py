"""The study report: tables, figures and a Markdown summary, also logged to the study's MLflow run.

    from pathlib import Path
    from analysis.report import write_report
    folder = write_report(storage=Path("studies/loss_mix"))   # -> studies/loss_mix/report

The front is chosen on the validation objectives; the test metrics of its members are formatted
beside it and never used to choose anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from analysis import plots, stats
from analysis.records import RecordsError, StudyRecords, read_study

logger = logging.getLogger(__name__)

REPORT_FOLDER = "report"
ARTIFACT_PATH = "report"
FILES = (
    "pareto.png", "pareto.html", "convergence.png", "configurations.csv", "runs.csv",
    "comparisons.csv", "hypervolume.csv", "report.md",
)
# Test metrics formatted beside the front: the objectives and the reference study's two figures.
TEST_COLUMNS = ("test_id_dice", "test_ood_specificity", "test_reference_dice", "test_reference_empty_fraction")
SETTING_COLUMNS = ("loss_family", "loss_setting", "ce_weight", "loss_schedule", "dice_variant", "architecture", "encoder")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    if value is None or value is pd.NaT:
        return ""
    return str(value).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """Format the given columns of ``table`` as a Markdown table (missing columns are skipped)."""
    columns = [column for column in columns if column in table.columns]
    if table.empty or not columns:
        return "(none)\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[column]) for column in columns) + " |" for _, row in table.iterrows()]
    return "\n".join(lines) + "\n"


def with_intervals(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Add one text column per metric: "mean [low, high]"."""
    formatted = table.copy()
    for name in names:
        if f"{name}_mean" not in formatted:
            continue
        formatted[name] = [
            f"{_cell(mean)} [{_cell(low)}, {_cell(high)}]" if not math.isnan(low) else _cell(mean)
            for mean, low, high in zip(formatted[f"{name}_mean"], formatted[f"{name}_ci_low"], formatted[f"{name}_ci_high"])
        ]
    return formatted


def _summary_lines(records: StudyRecords, configurations: pd.DataFrame) -> list[str]:
    runs = records.runs
    statuses = runs["status"].value_counts().to_dict() if len(runs) else {}
    return [
        f"# Study report: {records.source.experiment}",
        "",
        f"- MLflow: experiment `{records.source.experiment}` in `{records.source.tracking_uri}`",
        f"- Study folder: `{records.source.storage or ''}`",
        f"- Data: `{records.source.settings.get('data', '')}`",
        f"- Runs: {len(runs)} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items())) or 'none'}); "
        f"configurations: {len(configurations)}",
        "",
    ]


def render_markdown(
    records: StudyRecords,
    configurations: pd.DataFrame,
    volumes: pd.DataFrame,
    comparisons: pd.DataFrame,
    objectives: Sequence[str],
    reference: Sequence[float],
) -> str:
    """Return the text of report.md."""
    lines = _summary_lines(records, configurations)
    if records.runs.empty:
        lines += ["No trial runs were recorded in this experiment; nothing to summarise.", ""]
        return "\n".join(lines)

    front = configurations[configurations["front"].astype(bool)] if len(configurations) else configurations
    front = front.sort_values(f"{objectives[0]}_mean", ascending=False) if len(front) else front
    settings = [column for column in SETTING_COLUMNS if column in configurations]
    lines += [
        "## Pareto front (validation)",
        "",
        f"Configurations not dominated on the seed means of `{objectives[0]}` and `{objectives[1]}` "
        "(validation splits). Each cell is the mean with its 95% Student t interval over seeds; "
        "`p_front` is the share of 1000 bootstrap resamplings of seeds in which the configuration stays "
        "on the front. Failed runs are excluded and counted in `n_failed`.",
        "",
        markdown_table(with_intervals(front, objectives), ["config_id", *settings, "n", "n_failed", *objectives, "p_front"]),
        "## The same configurations on test",
        "",
        "Chosen on validation above; the test splits (id_test and ood_test) are only reported. "
        "`test_reference_dice` and `test_reference_empty_fraction` are the reference study's figures "
        "(Dice over all images with empty-on-lesion-free scoring 1, and the share of empty predictions).",
        "",
        markdown_table(with_intervals(front, TEST_COLUMNS), ["config_id", "n", *TEST_COLUMNS]),
        "## Hypervolume",
        "",
        f"Area dominated by the configuration means, bounded below by the reference point "
        f"{tuple(float(value) for value in reference)} on ({objectives[0]}, {objectives[1]}); the interval is "
        "the 2.5-97.5 percentile range over 1000 bootstrap resamplings of seeds.",
        "",
        markdown_table(volumes, ["group", "configurations", "hypervolume", "ci_low", "ci_high"]),
        "## Paired comparisons of loss families",
        "",
        "Every two configurations of different loss families, paired by seed; difference = a - b. "
        f"Wilcoxon signed-rank with >= {stats.WILCOXON_MIN_PAIRS} pairs, else the exact sign-flip "
        "permutation test (with n pairs its smallest p is 2 / 2^n, so n <= 5 can never reach 0.05). "
        f"`p_holm` is Holm-corrected over all {len(comparisons)} rows.",
        "",
        markdown_table(
            comparisons,
            ["objective", "config_a", "family_a", "config_b", "family_b", "n_pairs", "mean_difference",
             "rank_biserial", "test", "p_value", "p_holm", "significant"],
        ),
        "## All configurations",
        "",
        markdown_table(
            with_intervals(configurations, objectives),
            ["config_id", *settings, "n", "n_failed", "n_incomplete", *objectives, "front", "p_front"],
        ),
        "## Files",
        "",
        *[f"- `{name}`" for name in FILES],
        "",
    ]
    return "\n".join(lines)


def log_report(records: StudyRecords, folder: Path) -> None:
    """Log the report files as artifacts of the study's parent run, under ``report/``."""
    if records.parent_run_id is None:
        logger.warning("experiment %s has no study run; the report is not logged to MLflow", records.source.experiment)
        return
    client = MlflowClient(tracking_uri=records.source.tracking_uri)
    for name in FILES:
        path = folder / name
        if path.exists():
            client.log_artifact(records.parent_run_id, str(path), ARTIFACT_PATH)


def write_report(
    storage: Path | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    output: Path | None = None,
    log_to_mlflow: bool = True,
    objectives: Sequence[str] = stats.OBJECTIVES,
    reference: Sequence[float] = stats.DEFAULT_REFERENCE,
) -> Path:
    """Write the study report folder and return its path.

    Args:
        storage: the study folder (holding study.yaml); its tracking URI and name are used
            unless ``tracking_uri`` / ``experiment`` are given.
        tracking_uri, experiment: the MLflow store and experiment, without a study folder.
        output: the report folder; default ``<storage>/report`` (required without ``storage``).
        log_to_mlflow: also log every file as an artifact of the study's parent run.
        objectives: the two maximised validation metrics of the front.
        reference: the hypervolume reference point, recorded in the report.

    A study with no finished run still gets report.md, the tables (possibly empty) and
    placeholder figures.

    Raises:
        RecordsError: when the study folder, tracking store or experiment cannot be found, or
            when no output folder can be derived.
    """

    objectives = stats.check_objectives(objectives)
    reference = stats.check_reference(reference)
    records = read_study(storage, tracking_uri, experiment)
    if output is None:
        if records.source.storage is None:
            raise RecordsError("no output folder: pass output=... (or --output DIR) when no study folder is given")
        output = records.source.storage / REPORT_FOLDER
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)

    # Tables: runs, configurations with their front, hypervolume, paired comparisons. Runs that
    # all failed before their first epoch have no objective columns; those count as missing.
    runs = records.runs.copy()
    for name in objectives:
        if name not in runs:
            runs[name] = float("nan")
    configurations = stats.aggregate_configurations(runs, objectives)
    configurations = stats.add_front(configurations, runs, objectives)
    volumes = stats.hypervolume_table(configurations, runs, objectives, reference)
    comparisons = stats.compare_families(runs, objectives)
    curve = stats.convergence(configurations, objectives, reference)
    runs.to_csv(folder / "runs.csv", index=False)
    configurations.to_csv(folder / "configurations.csv", index=False)
    volumes.to_csv(folder / "hypervolume.csv", index=False)
    comparisons.to_csv(folder / "comparisons.csv", index=False)

    # Figures and the Markdown summary.
    title = f"{records.source.experiment}: configuration means"
    plots.pareto_png(configurations, folder / "pareto.png", objectives, title)
    plots.pareto_html(configurations, folder / "pareto.html", objectives, title)
    plots.convergence_png(curve, folder / "convergence.png", reference, f"{records.source.experiment}: search convergence")
    text = render_markdown(records, configurations, volumes, comparisons, objectives, reference)
    (folder / "report.md").write_text(text)

    if log_to_mlflow:
        log_report(records, folder)
    return folder


def front_summary(folder: Path, objectives: Sequence[str] = stats.OBJECTIVES) -> str:
    """Return the front of a written report as a short text table (for the command line)."""
    table = pd.read_csv(folder / "configurations.csv")
    if table.empty or "front" not in table:
        return "no configuration with a finished run"
    front = table[table["front"].astype(bool)].sort_values(f"{objectives[0]}_mean", ascending=False)
    columns = ["config_id", "loss_family", "n", *[f"{name}_mean" for name in objectives], "p_front"]
    return front[[column for column in columns if column in front]].to_string(index=False, float_format=lambda v: f"{v:.4f}")
