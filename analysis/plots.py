"""Figures of a study: the Pareto plot (PNG and interactive HTML) and the convergence plot.

Inputs are the configuration table of ``analysis.stats`` (with ``front``) and its convergence
table. Matplotlib runs on the Agg backend, so no display is needed; the HTML file embeds
plotly.js and opens offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from analysis.stats import OBJECTIVES  # noqa: E402

# One fixed colour per loss family, so figures of different studies read alike.
FAMILY_COLOURS = {"ce": "#1f77b4", "dice": "#d62728", "mixture": "#2ca02c", "schedule": "#9467bd"}
OTHER_COLOUR = "#7f7f7f"
DPI = 150


def _colour(family: str) -> str:
    return FAMILY_COLOURS.get(str(family), OTHER_COLOUR)


def _error(table: pd.DataFrame, name: str) -> np.ndarray:
    """Return asymmetric error bar lengths (2, k) from the CI columns; NaN bounds draw no bar."""
    mean = table[f"{name}_mean"].to_numpy(dtype=float)
    low = np.nan_to_num(mean - table[f"{name}_ci_low"].to_numpy(dtype=float), nan=0.0)
    high = np.nan_to_num(table[f"{name}_ci_high"].to_numpy(dtype=float) - mean, nan=0.0)
    return np.vstack([low, high])


def _front_line(table: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    return table[table["front"].astype(bool)].sort_values(f"{objectives[0]}_mean")


def pareto_png(configurations: pd.DataFrame, path: Path, objectives: Sequence[str] = OBJECTIVES, title: str = "") -> Path:
    """Scatter of configuration means with seed-CI error bars; the front is ringed and joined."""
    x_name, y_name = objectives
    figure, axes = plt.subplots(figsize=(7, 5.5))
    table = configurations.dropna(subset=[f"{x_name}_mean", f"{y_name}_mean"]) if len(configurations) else configurations
    if len(table) == 0:
        axes.text(0.5, 0.5, "no configuration with a finished run", ha="center", va="center", transform=axes.transAxes)
    for family, group in table.groupby("loss_family") if len(table) else []:
        axes.errorbar(
            group[f"{x_name}_mean"], group[f"{y_name}_mean"],
            xerr=_error(group, x_name), yerr=_error(group, y_name),
            fmt="o", color=_colour(family), ecolor=_colour(family), alpha=0.8, capsize=3, label=str(family),
        )
    front = _front_line(table, objectives) if len(table) else table
    if len(front):
        axes.plot(front[f"{x_name}_mean"], front[f"{y_name}_mean"], "-", color="black", linewidth=1, zorder=3)
        axes.scatter(
            front[f"{x_name}_mean"], front[f"{y_name}_mean"], s=160, facecolors="none",
            edgecolors="black", linewidths=1.5, zorder=4, label="Pareto front",
        )
        for _, row in front.iterrows():
            axes.annotate(str(row["config_id"]), (row[f"{x_name}_mean"], row[f"{y_name}_mean"]),
                          textcoords="offset points", xytext=(6, 6), fontsize=8)
    axes.set_xlabel(f"{x_name} (validation, seed mean, 95% t-interval)")
    axes.set_ylabel(f"{y_name} (validation, seed mean, 95% t-interval)")
    axes.set_title(title or "Pareto front of configuration means")
    axes.grid(alpha=0.3)
    if len(table):
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def pareto_html(configurations: pd.DataFrame, path: Path, objectives: Sequence[str] = OBJECTIVES, title: str = "") -> Path:
    """Interactive version of the Pareto plot; hovering a point shows its settings and seeds."""
    x_name, y_name = objectives
    table = configurations.dropna(subset=[f"{x_name}_mean", f"{y_name}_mean"]) if len(configurations) else configurations
    figure = go.Figure()
    hover_columns = [c for c in ("config_id", "loss_family", "loss_setting", "ce_weight", "loss_schedule",
                                 "dice_variant", "architecture", "encoder", "n", "n_failed", "p_front") if c in table]
    for family, group in table.groupby("loss_family") if len(table) else []:
        errors_x, errors_y = _error(group, x_name), _error(group, y_name)
        figure.add_trace(go.Scatter(
            x=group[f"{x_name}_mean"], y=group[f"{y_name}_mean"], mode="markers", name=str(family),
            marker={"color": _colour(family), "size": 10},
            error_x={"type": "data", "symmetric": False, "array": errors_x[1], "arrayminus": errors_x[0]},
            error_y={"type": "data", "symmetric": False, "array": errors_y[1], "arrayminus": errors_y[0]},
            customdata=group[hover_columns].astype(str).to_numpy(),
            hovertemplate="<br>".join(f"{c}=%{{customdata[{i}]}}" for i, c in enumerate(hover_columns))
            + f"<br>{x_name}=%{{x:.4f}}<br>{y_name}=%{{y:.4f}}<extra></extra>",
        ))
    front = _front_line(table, objectives) if len(table) else table
    if len(front):
        figure.add_trace(go.Scatter(
            x=front[f"{x_name}_mean"], y=front[f"{y_name}_mean"], mode="lines+markers", name="Pareto front",
            line={"color": "black"}, marker={"size": 16, "symbol": "circle-open", "color": "black"},
            text=front["config_id"], hoverinfo="text",
        ))
    figure.update_layout(
        title=title or "Pareto front of configuration means",
        xaxis_title=f"{x_name} (validation, seed mean)", yaxis_title=f"{y_name} (validation, seed mean)",
        template="plotly_white",
    )
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def convergence_png(curve: pd.DataFrame, path: Path, reference: Sequence[float], title: str = "") -> Path:
    """Hypervolume of the front against the number of completed configurations."""
    figure, axes = plt.subplots(figsize=(7, 4))
    if len(curve):
        axes.step(curve["completed"], curve["hypervolume"], where="post", marker="o", color="black")
    else:
        axes.text(0.5, 0.5, "no completed configuration", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("completed configurations (in order of completion)")
    axes.set_ylabel(f"hypervolume (reference {tuple(float(v) for v in reference)})")
    axes.set_title(title or "Search convergence")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
