"""Build the reproduction's results page from the MLflow records of its four studies.

    python -m experiments.results --out studies/reproduce --results docs/results.md

Reads ``<out>/<dataset>_paper`` and ``<out>/<dataset>_loss_mix`` (written by
``experiments.reproduce``) through ``analysis.records``, so every number on the page comes from
the tracked runs. Figures go to a folder named after the page (``docs/results/``). The verdicts
at the end of each dataset's section are computed from the same tables by fixed rules, listed
in ``verdicts``, so rerunning the experiment rewrites them too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots, stats
from analysis.records import RecordsError, read_study
from analysis.report import markdown_table, with_intervals

DATASET_TITLES = {
    "kvasir_seg": "Kvasir-SEG polyps, lesion-free colonoscopy frames as OoD",
    "fuseg": "FUSeg foot ulcers, healthy foot-skin patches as OoD",
}
SETTING_ORDER = ("ce", "dice", "combo", "linear", "finetune")
SETTING_NAMES = {
    "ce": "CE", "dice": "Dice", "combo": "0.5 CE + 0.5 Dice", "linear": "linear CE -> Dice", "finetune": "fine-tune CE -> Dice",
}
VALIDATION = ("id_dice", "ood_specificity", "ood_fp_burden", "auroc_max_prob")
TEST = (
    "test_id_dice", "test_ood_specificity", "test_ood_fp_burden", "test_auroc_max_prob",
    "test_reference_dice", "test_reference_empty_fraction",
)
TEST_OBJECTIVES = ("test_id_dice", "test_ood_specificity")

# Galdran et al. (2022), ResNet18 W-Net on Kvasir-SEG: 5-fold ID Dice (%), Dice over the 220 test
# images (200 polyp + 20 lesion-free frames, %), and the share of those 220 with an empty
# prediction (%). The paper gives these for the polyp task only.
REFERENCE_KVASIR = {
    "ce": (89.19, 87.33, 6.36),
    "dice": (88.83, 81.91, 1.82),
    "combo": (89.81, 84.89, 4.09),
    "linear": (89.76, 86.94, 5.45),
    "finetune": (89.06, 86.62, 5.91),
}
REFERENCE_OOD_IMAGES = 20
REFERENCE_TEST_IMAGES = 220
# ID Dice counts as "close for all settings" when the setting means lie within this range, as the
# reference's five means do (88.83 to 89.81).
CLOSE_ID_DICE = 0.03


def load(storage: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (runs, configurations with front) of one study folder."""
    records = read_study(storage)
    runs = records.runs.copy()
    for name in stats.OBJECTIVES:
        if name not in runs:
            runs[name] = math.nan
    return runs, configurations_of(runs)


def configurations_of(runs: pd.DataFrame) -> pd.DataFrame:
    """Seed statistics per configuration, with the front, and intervals clipped to [0, 1].

    Every metric on the page is a fraction, but a Student t interval over 2 or 3 seeds can reach
    far outside [0, 1]; the page shows the part that can hold a value.
    """
    configurations = stats.add_front(stats.aggregate_configurations(runs), runs)
    for column in configurations.columns:
        if column.endswith(("_ci_low", "_ci_high")):
            configurations[column] = configurations[column].clip(0.0, 1.0)
    return configurations


def setting_label(row: pd.Series) -> str:
    """Return a readable name of a configuration: the paper's setting, or the mixture weight and Dice variant."""
    setting = row.get("loss_setting")
    if isinstance(setting, str) and setting:
        return SETTING_NAMES.get(setting, setting)
    return f"lambda={float(row['ce_weight']):.2f} ({row.get('dice_variant', '')})"


def by_setting(configurations: pd.DataFrame) -> pd.DataFrame:
    """Order the paper study's configurations as the reference does and label them."""
    table = configurations.copy()
    table["order"] = [SETTING_ORDER.index(name) if name in SETTING_ORDER else len(SETTING_ORDER) for name in table["loss_setting"]]
    table = table.sort_values("order").drop(columns="order")
    table["setting"] = [setting_label(row) for _, row in table.iterrows()]
    return table


def ce_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired tests of CE against each other setting, on validation and test objectives.

    Differences are other - CE, so a positive value favours the other setting. Holm's correction
    runs over the rows of this table only.
    """
    ce_config = runs.loc[runs["loss_setting"] == "ce", "config_id"]
    if ce_config.empty:
        return pd.DataFrame()
    ce_config = ce_config.iloc[0]
    settings = runs.groupby("config_id")["loss_setting"].first().to_dict()
    rows = []
    for objectives, split in ((stats.OBJECTIVES, "validation"), (TEST_OBJECTIVES, "test")):
        if not all(name in runs for name in objectives):
            continue
        # Compare every configuration with CE: give each its own family so none is skipped.
        table = stats.compare_families(runs.assign(family=runs["config_id"]), objectives, family_column="family")
        table = table[(table["config_a"] == ce_config) | (table["config_b"] == ce_config)]
        for _, row in table.iterrows():
            flip = row["config_a"] == ce_config
            other = row["config_b"] if flip else row["config_a"]
            sign = -1.0 if flip else 1.0
            rows.append({
                "metric": row["objective"], "split": split, "other": SETTING_NAMES.get(settings[other], settings[other]),
                "n_pairs": row["n_pairs"],
                "mean_ce": row["mean_a"] if flip else row["mean_b"],
                "mean_other": row["mean_b"] if flip else row["mean_a"],
                "other_minus_ce": sign * row["mean_difference"],
                "rank_biserial": sign * row["rank_biserial"],
                "test": row["test"], "p_value": row["p_value"],
            })
    result = pd.DataFrame(rows)
    if len(result):
        result["p_holm"] = stats.holm(result["p_value"].to_numpy(dtype=float))
    return result


def joint_configurations(
    paper: tuple[pd.DataFrame, pd.DataFrame], mix: tuple[pd.DataFrame, pd.DataFrame] | None
) -> pd.DataFrame:
    """Return the configurations of both studies together, with the front recomputed over all of them."""
    frames = []
    for prefix, pair in (("paper", paper), ("mix", mix)):
        if pair is None:
            continue
        runs = pair[0].copy()
        labels = {config: setting_label(group.iloc[0]) for config, group in runs.groupby("config_id")}
        runs["config_id"] = [f"{prefix}:{labels[config]}" for config in runs["config_id"]]
        frames.append(runs)
    return configurations_of(pd.concat(frames, ignore_index=True))


def _mean(table: pd.DataFrame, setting: str, name: str) -> float:
    row = table[table["loss_setting"] == setting]
    return float(row[f"{name}_mean"].iloc[0]) if len(row) else math.nan


def verdicts(table: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    """Check the reference's pattern on the paper study's configuration table, by fixed rules.

    1. CE is silent on lesion-free images more often than soft Dice (OoD specificity CE > Dice).
    2. The three mixtures lie between the two (inclusive) on OoD specificity.
    3. ID Dice is close for all five settings (range of means <= CLOSE_ID_DICE).
    4. A CE + Dice mixture (0.5/0.5, linear or fine-tune) has the highest ID Dice.
    Each rule is checked on validation and on test.
    """
    lines = []
    for split, prefix in (("validation", ""), ("test", "test_")):
        spec, dice = f"{prefix}ood_specificity", f"{prefix}id_dice"
        if f"{spec}_mean" not in table:
            continue
        ce, soft = _mean(table, "ce", spec), _mean(table, "dice", spec)
        p = math.nan
        if len(comparisons):
            row = comparisons[(comparisons["split"] == split) & (comparisons["metric"] == spec) & (comparisons["other"] == SETTING_NAMES["dice"])]
            p = float(row["p_value"].iloc[0]) if len(row) else math.nan
        lines.append(
            f"- {split}: CE more specific on lesion-free images than Dice: **{_yes(ce > soft)}** "
            f"(CE {ce:.3f}, Dice {soft:.3f}, paired p = {p:.3g})."
        )
        low, high = min(ce, soft), max(ce, soft)
        mixtures = {SETTING_NAMES[name]: _mean(table, name, spec) for name in ("combo", "linear", "finetune")}
        between = [name for name, value in mixtures.items() if low <= value <= high]
        lines.append(
            f"- {split}: mixtures between CE and Dice on OoD specificity: **{len(between)} of 3** "
            f"({', '.join(f'{name} {value:.3f}' for name, value in mixtures.items())})."
        )
        means = {SETTING_NAMES[name]: _mean(table, name, dice) for name in SETTING_ORDER}
        values = np.array([value for value in means.values() if not math.isnan(value)])
        spread = float(values.max() - values.min()) if values.size else math.nan
        lines.append(
            f"- {split}: ID Dice close for all settings (range <= {CLOSE_ID_DICE}): **{_yes(spread <= CLOSE_ID_DICE)}** "
            f"(range {spread:.3f}, from {values.min():.3f} to {values.max():.3f})."
        )
        best = max(means, key=lambda name: -math.inf if math.isnan(means[name]) else means[name])
        mixture_best = best not in (SETTING_NAMES["ce"], SETTING_NAMES["dice"])
        lines.append(f"- {split}: a mixture has the best ID Dice: **{_yes(mixture_best)}** (best: {best}, {means[best]:.3f}).")
    return lines


def _power_note(comparisons: pd.DataFrame) -> str:
    """Say what the exact sign-flip test can show with the number of seed pairs at hand."""
    if comparisons.empty:
        return "No pairs were found."
    pairs = int(comparisons["n_pairs"].max())
    if pairs >= stats.WILCOXON_MIN_PAIRS:
        return f"With {pairs} pairs the rows use the Wilcoxon signed-rank test."
    return (
        f"With {pairs} pairs the exact sign-flip test cannot give p below {2 / 2 ** pairs:.3g}, so these rows "
        "show the direction of each difference and whether every seed agrees, not significance."
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def reference_table(table: pd.DataFrame) -> str:
    """Return the reference's polyp numbers beside this run's as a Markdown table, in the reference's units (%)."""
    rows = []
    for setting in SETTING_ORDER:
        cv, test_dice, empty = REFERENCE_KVASIR[setting]
        # The best case for the reference: every empty prediction is one of its 20 lesion-free images.
        implied = min(1.0, empty / 100 * REFERENCE_TEST_IMAGES / REFERENCE_OOD_IMAGES)
        rows.append({
            "setting": SETTING_NAMES[setting],
            "ref ID Dice (CV)": f"{cv:.2f}",
            "ours ID Dice (val)": f"{100 * _mean(table, setting, 'id_dice'):.2f}",
            "ref test Dice": f"{test_dice:.2f}",
            "ours test Dice (ref. scoring)": f"{100 * _mean(table, setting, 'test_reference_dice'):.2f}",
            "ref % empty": f"{empty:.2f}",
            "ours % empty": f"{100 * _mean(table, setting, 'test_reference_empty_fraction'):.2f}",
            "ref OoD spec. (at most)": f"{implied:.2f}",
            "ours OoD spec. (test)": f"{_mean(table, setting, 'test_ood_specificity'):.2f}",
        })
    frame = pd.DataFrame(rows)
    return markdown_table(frame, list(frame.columns))


def study_settings(storage: Path) -> dict:
    """Return a study folder's manifest.json as a dict, or {} when the study wrote none."""
    manifest = storage / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def dataset_section(dataset: str, out: Path, figures: Path, page: Path) -> list[str]:
    """Return the Markdown lines of one dataset's section; its Pareto plot goes to ``figures``."""
    paper_folder, mix_folder = out / f"{dataset}_paper", out / f"{dataset}_loss_mix"
    paper = load(paper_folder)
    mix = load(mix_folder) if (mix_folder / "mlflow.db").is_file() else None
    paper_runs = paper[0]
    table = by_setting(paper[1])
    comparisons = ce_comparisons(paper_runs)

    lines = [
        f"## {DATASET_TITLES.get(dataset, dataset)}",
        "",
        f"Study folders: `{paper_folder.name}` and `{mix_folder.name}`. "
        f"Runs: {len(paper_runs)} in the paper study ({int((paper_runs['status'] == 'FINISHED').sum())} finished)"
        + (f", {len(mix[0])} in the loss_mix study." if mix is not None else "; the loss_mix study has no records yet."),
        "",
        "### Validation (the splits the front is chosen on)",
        "",
        "Seed mean with its 95% Student t interval over the `n` finished seeds; `n_failed` runs did not finish "
        "and count nowhere (their reasons are in the study's `report/runs.csv`). `ood_fp_burden` is the mean share of "
        "pixels predicted as lesion on a lesion-free image; `auroc_max_prob` separates lesion from "
        "lesion-free images by the highest pixel probability.",
        "",
        markdown_table(with_intervals(table, VALIDATION), ["setting", "n", "n_failed", *VALIDATION]),
        "### Test (reported only, never used to choose)",
        "",
        "`test_reference_dice` scores each lesion-free image 1 when nothing is predicted and 0 otherwise, "
        "averaged with the Dice of the lesion images; `test_reference_empty_fraction` is the share of all "
        "test images with an empty prediction. These are the reference's two figures.",
        "",
        markdown_table(with_intervals(table, TEST), ["setting", "n", "n_failed", *TEST]),
        "### CE against each other setting",
        "",
        "Paired by seed; `other_minus_ce` > 0 favours the other setting, and `rank_biserial` is +1 or -1 when "
        "every seed moves the same way. "
        + _power_note(comparisons)
        + " `p_holm` is Holm-corrected over this table.",
        "",
        markdown_table(
            comparisons,
            ["split", "metric", "other", "n_pairs", "mean_ce", "mean_other", "other_minus_ce", "rank_biserial", "test", "p_value", "p_holm"],
        ),
    ]

    joint = joint_configurations(paper, mix)
    if mix is not None:
        mix_rows = joint[joint["config_id"].str.startswith("mix:")].sort_values("ce_weight")
        lines += [
            "### The continuous CE weight (loss_mix), same budget per configuration",
            "",
            "`front` is membership of the front over the five settings and these configurations together "
            "(validation seed means); `p_front` its bootstrap share.",
            "",
            markdown_table(
                with_intervals(mix_rows, ("id_dice", "ood_specificity", "test_id_dice", "test_ood_specificity")),
                ["config_id", "n", "id_dice", "ood_specificity", "test_id_dice", "test_ood_specificity", "front", "p_front"],
            ),
        ]

    figure = figures / f"{dataset}_pareto.png"
    plots.pareto_png(joint, figure, title=f"{dataset}: five settings and loss_mix, validation")

    lines += [
        "### Pareto plot",
        "",
        f"![{dataset} Pareto plot]({figure.relative_to(page.parent).as_posix()})",
        "",
        "Each point is a configuration's seed mean with 95% t intervals; the ringed points form the front over "
        "both studies. The per-study reports (with an interactive plot) are in each study folder's `report/`.",
        "",
    ]

    if dataset == "kvasir_seg":
        lines += [
            "### Side by side with the reference",
            "",
            "The reference used 480x640 inputs, ImageNet weights, 12 epochs, a W-Net and 5 folds; its OoD column "
            "is an upper bound derived from `% empty` (every empty prediction taken to be one of its 20 lesion-free "
            "images). Ours: 300 lesion-free frames split into validation and test halves.",
            "",
            reference_table(table),
        ]
    else:
        lines += [
            "The reference's numbers quoted on this page are for polyps only, so this dataset is compared with "
            "the reference's pattern alone.",
            "",
        ]

    lines += ["### Which parts of the pattern reproduce", "", *verdicts(table, comparisons), ""]
    return lines


def header_lines(out: Path) -> list[str]:
    """Return the page's opening: the commands, the settings, wall times, machine and versions."""
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    studies = timings.get("studies", {})
    manifest = next((study_settings(out / name) for name in studies if (out / name / "manifest.json").is_file()), {})
    versions = manifest.get("versions", {})
    settings = manifest.get("study", {})
    machine = timings.get("machine", {})
    total = sum(entry.get("wall_s", 0.0) for entry in studies.values())

    lines = [
        "# Results: the reference's loss comparison, rerun at CPU scale",
        "",
        "This page is generated by `python -m experiments.results` from the MLflow records of the studies "
        "that `python -m experiments.reproduce` ran; rerunning the two commands rewrites it.",
        "",
        "## What was run",
        "",
        "```bash",
        "LESION_STUDY_DATA=/path/to/data python -m experiments.reproduce --out studies/reproduce",
        "python -m experiments.results --out studies/reproduce --results docs/results.md   # the page only",
        "```",
        "",
        "The first command runs four studies, one after another. Their settings are in "
        "`experiments/configs/paper.yaml` and `experiments/configs/loss_mix.yaml`:",
        "",
        f"- Inputs {settings.get('image_size', '?')} px, epochs per trial: {settings.get('epochs', '?')}, "
        f"{settings.get('seeds', '?')} seeds per configuration (seeds {settings.get('seed_offset', 0)} to "
        f"{settings.get('seed_offset', 0) + int(settings.get('seeds', 1)) - 1}), 1 CPU per trial, random encoder initialisation.",
        "- Model: FPN over ResNet18 (the reference's W-Net is two FPNs in cascade; one FPN halves the cost per step).",
        "- Recipe as the reference: NAdam at lr 3e-4, batch 8, cosine decay per step, affine + colour-jitter + "
        "flip augmentation, threshold 0.5, the last epoch's model.",
        "- Splits: 60/20/20 train/validation/test of the lesion images, and the lesion-free images halved into "
        "validation and test (split seed 0).",
        "- loss_mix: the same model, recipe and budget per configuration. Multi-objective TPE picks every CE "
        "weight and Dice variant (its first four picks are random start-up trials), because the space's usual initial points (CE, per-image Dice and "
        "0.5/0.5) are the paper study's settings, already run with the same seeds.",
        "",
        "`<out>` stands for the `--out` folder.",
        "",
        "| study | wall time (min) | exit | commit | command |",
        "|---|---:|---:|---|---|",
    ]

    for name, entry in studies.items():
        wall = f"{entry.get('wall_s', 0.0) / 60:.1f}"
        if "--resume" in entry.get("command", []):
            wall += " (interrupted, then resumed; both runs)"
        product = study_settings(out / name).get("product", {})
        commit = str(product.get("commit") or "?")[:7] + (" (with local changes)" if product.get("dirty") else "")
        lines.append(f"| {name} | {wall} | {entry.get('exit', '')} | {commit} | `{_command_text(entry, out)}` |")
    lines += [
        "",
        f"Total: {total / 60:.1f} min on {machine.get('cpus', '?')} CPU cores ({machine.get('platform', '?')}), "
        f"Python {machine.get('python', '?')}, no GPU.",
        "",
        "Versions: "
        + ", ".join(
            f"{name} {version}" for name, version in versions.items()
            if name not in ("cuda", "cudnn") and version != "not installed"
        )
        + ".",
        "",
    ]
    return lines


def _command_text(entry: dict, out: Path) -> str:
    """Return the recorded command, with the repository and the --out folder written as relative names."""
    text = "python " + " ".join(entry.get("command", []))
    return text.replace(f"{Path(__file__).resolve().parent.parent}/", "").replace(str(out.resolve()), "<out>")


def write_results(out: Path, page: Path, datasets=("kvasir_seg", "fuseg")) -> Path:
    """Write the results page (and its figures) for the studies under ``out``; return its path."""
    out = Path(out)
    page = Path(page)
    missing = [name for name in datasets if not (out / f"{name}_paper" / "mlflow.db").is_file()]
    if missing:
        raise RecordsError(
            f"no paper study for {', '.join(missing)} under {out}; run `python -m experiments.reproduce --out {out}` first"
        )
    figures = page.parent / page.stem
    figures.mkdir(parents=True, exist_ok=True)
    lines = header_lines(out)
    for dataset in datasets:
        lines += dataset_section(dataset, out, figures, page)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.results", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="studies/reproduce", help="folder of the studies (default: studies/reproduce)")
    parser.add_argument("--results", default="docs/results.md", help="page to write (default: docs/results.md)")
    parser.add_argument("--datasets", nargs="+", default=["kvasir_seg", "fuseg"], help="datasets to include (default: both)")
    args = parser.parse_args(argv)
    try:
        path = write_results(Path(args.out), Path(args.results), args.datasets)
    except RecordsError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
