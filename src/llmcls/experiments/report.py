"""`llmcls report`: the leaderboard, seed ensembles, significance tests, learning curves and best-run figures as
Markdown + PNG.

Reads runs (runs.py), aggregates them over seeds (aggregate.py, seed_ensemble.py) and writes one Markdown file
whose figures (plots.py) and seed-ensemble predictions sit in a folder beside it. Everything is on each
dataset's test split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.core.outputs import staged_dir, staged_file
from llmcls.evaluate.calibration import ece_of, reliability
from llmcls.evaluate.metrics import METRIC_NAMES
from llmcls.experiments.aggregate import (
    AUTO,
    LOWER_IS_BETTER,
    Comparison,
    Curve,
    Group,
    best_per_dataset,
    comparisons,
    entries,
    group_entries,
    learning_curves,
    seeds,
    size_name,
)
from llmcls.experiments.plots import plot_confusion, plot_learning_curves, plot_per_class_f1, plot_reliability
from llmcls.experiments.runs import SEED, Run
from llmcls.experiments.seed_ensemble import SeedEnsemble, labelled_probabilities, read_predictions, seed_ensemble

PREDICTIONS = {
    "llm": "metrics/predictions/test.csv",
    "baseline": "metrics/baseline/predictions/test.csv",
    "ensemble": "metrics/ensemble/predictions/test.csv",
    "prompt_only": "metrics/prompt_only/predictions/test.csv",
}
REPORTS = {
    "llm": "metrics/eval_report.json",
    "baseline": "metrics/baseline/eval_report.json",
    "ensemble": "metrics/ensemble/eval_report.json",
    "prompt_only": "metrics/prompt_only/eval_report.json",
}
# Reads a git-tracked file as a run committed it: (run, path) -> text, or None.
FileReader = Callable[[Run, str], "str | None"]
INTRO = """Every number is on the dataset's test split (SST-2: the 872-row GLUE dev set); mean ± sample std
(n - 1) over seeds. Bold: the best mean {metric} per dataset. Systems: the fine-tuned LLM, the TF-IDF + logistic
regression baseline on the same splits, their probability ensemble, and the prompt-only row: the base model
with no fine-tuning, scoring each label's text after the same prompt. The baseline and the prompt-only row do
not depend on train.seed, so their std is 0. Bracketed: settings that differ from params.yaml."""


def metric_text(metric: str) -> str:
    """How the report names the metric it ranks by."""
    if metric == AUTO:
        return "main metric of the dataset's task (accuracy; multi-label: macro F1; scores: Pearson)"
    return METRIC_NAMES[metric]


def markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A Markdown table of ``rows`` (one mapping per row, the keys are the header), as lines."""
    return pd.DataFrame(list(rows)).to_markdown(index=False, disable_numparse=True).splitlines()


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _where(group: Group) -> dict[str, Any]:
    """The first cells of a group's row: dataset, system, train size, seeds."""
    return {
        "dataset": group.key("dataset"),
        "system": group.title,
        "train size": size_name(group.key("split.train_size")),
        "seeds": len(group.seeds),
    }


def leaderboard_table(groups: Sequence[Group], metric: str) -> list[str]:
    """Mean ± std over seeds per configuration, in the metric columns its runs have; the best ``metric`` (auto:
    the task's main one) per dataset in bold."""
    best = best_per_dataset(groups, metric)
    shown = [m for m in METRIC_NAMES if any(g.summary(m).n for g in groups)]
    rows = []
    for group in groups:
        cells = {METRIC_NAMES[m]: group.summary(m).format() for m in shown}
        if best.get(group.key("dataset")) is group:
            name = METRIC_NAMES[group.metric(metric)]
            cells[name] = f"**{cells[name]}**"
        seconds = group.train_seconds
        time_cell = f"{seconds.mean:.0f}" if seconds.n and group.system != "baseline" else "—"
        rows.append(_where(group) | cells | {"train time (s)": time_cell})
    return markdown(rows)


def generated_table(groups: Sequence[Group]) -> list[str]:
    """The generative objective's free answers: the share inside the label set and the metrics that count an
    answer outside it as wrong (the scored numbers are the leaderboard's)."""
    rows = [g for g in groups if g.system == "llm" and g.generated("in_label_set_share").n]
    if not rows:
        return []
    names = {"in_label_set_share": "in the label set", "accuracy": "accuracy", "f1_macro": "macro F1"}
    table = [_where(g) | {shown: g.generated(key).format() for key, shown in names.items()} for g in rows]
    return [
        "## Generated answers",
        "",
        "The generative models' greedy answers on the test split: the share that names a class exactly, and the",
        "accuracy and macro F1 when an answer outside the label set counts as wrong.",
        "",
        *markdown(table),
        "",
    ]


def _ensemble_row(group: Group, result: SeedEnsemble | str, link: str | None) -> dict[str, Any]:
    if isinstance(result, str):
        return (
            _where(group)
            | dict.fromkeys(("accuracy", "macro F1", "log loss", "vs mean", "train time (s)"), "—")
            | {"predictions": f"not averaged: {result}"}
        )
    m = result.metrics or {}
    gain = m["accuracy"] - group.summary("accuracy").mean if m else math.nan
    return _where(group) | {
        "accuracy": _fmt(m.get("accuracy", math.nan)),
        "macro F1": _fmt(m.get("f1_macro", math.nan)),
        "log loss": _fmt(m.get("log_loss", math.nan)),
        "vs mean": "—" if math.isnan(gain) else f"{gain:+.4f}",
        "train time (s)": "—" if result.train_seconds is None else f"{result.train_seconds:.0f}",
        "predictions": link,
    }


def seed_ensemble_table(
    found: Sequence[tuple[Group, SeedEnsemble | str]], rel: str
) -> tuple[list[str], dict[str, SeedEnsemble]]:
    """The seed ensembles' section: Markdown lines, and {file name: ensemble} for the averaged predictions."""
    if not found:
        return [], {}
    files: dict[str, SeedEnsemble] = {}
    rows = []
    for group, result in found:
        link = None
        if not isinstance(result, str):
            name = f"seed_ensemble_{group.key('dataset')}_{len(files) + 1}.csv"
            files[name] = result
            link = f"[{name}]({rel}/{name})"
        rows.append(_ensemble_row(group, result, link))
    lines = [
        "## Seed ensembles",
        "",
        "Each LLM configuration run with two or more seeds, its seeds' test probabilities averaged: an ensemble",
        "that needs no training beyond the seeds' runs. Train time: the seeds' sum. The vs mean column: accuracy",
        "minus the seeds' mean accuracy (the leaderboard's row). The averaged predictions are in the CSV named.",
        "",
        *markdown(rows),
        "",
    ]
    return lines, files


def comparison_table(found: Sequence[Comparison]) -> list[str]:
    rows = [
        {
            "dataset": c.a.key("dataset"),
            "train size": size_name(c.a.key("split.train_size")),
            "comparison (a -> b)": f"{c.what} ({c.b.title})",
            "metric": METRIC_NAMES.get(c.metric, c.metric),
            "pairs": c.result.n,
            "mean a": _fmt(c.result.mean_a),
            "mean b": _fmt(c.result.mean_b),
            "b - a": f"{c.result.mean_diff:+.4f}",
            "t": _fmt(c.result.t, 2),
            "p": _fmt(c.result.p, 4),
        }
        for c in found
    ]
    return markdown(rows)


def significance_section(found: Sequence[Comparison], metric: str) -> list[str]:
    if not found:
        return ["## Significance tests", "", "No two configurations share two or more seeds yet.", ""]
    return [
        "## Significance tests",
        "",
        f"Test {metric_text(metric)} of configurations that differ in one setting, paired by seed: "
        f"{found[0].result.test}. p is not corrected for the number of tests; with 3 seeds only large",
        "effects can reach significance. Against the baseline or the prompt-only row (one value) it is a"
        " one-sample test of the per-seed differences.",
        "",
        *comparison_table(found),
        "",
    ]


def curves_section(curves: Sequence[Curve], metric: str, folder: Path, rel: str) -> list[str]:
    """One learning-curve figure per dataset, with its points listed under it."""
    lines = ["## Learning curves", ""]
    datasets = sorted({c.dataset for c in curves})
    for dataset in datasets:
        name = f"learning_curve_{dataset}.png"
        chosen = [c for c in curves if c.dataset == dataset]
        plot_learning_curves(chosen, dataset, chosen[0].metric, folder / name)
        lines += [f"![{dataset} learning curve]({rel}/{name})", ""]
        for curve in (c for c in curves if c.dataset == dataset):
            shown = ", ".join(f"{size_name(s)}: {p.format()} (n={p.n})" for s, p in curve.points)
            lines.append(f"- {curve.label}: {shown}")
        lines.append("")
    if not datasets:
        lines += ["No configuration was run at two or more train sizes yet.", ""]
    return lines


def best_run(group: Group, metric: str) -> Run:
    """The seed of ``group`` with the best ``metric``."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return max(group.entries, key=lambda e: sign * float(e.metrics[metric])).run


def best_section(best: Mapping[str, Group], metric: str, read_file: FileReader, folder: Path, rel: str) -> list[str]:
    """Each dataset's best configuration: its per-class F1 and its best seed's confusion matrix."""
    lines = ["## Best configuration per dataset", ""]
    for dataset, group in sorted(best.items()):
        metric_name = group.metric(metric)
        run = best_run(group, metric_name)
        seed = run.params.get(SEED)
        lines += [
            f"### {dataset}: {group.title}, train size {size_name(group.key('split.train_size'))}",
            "",
            f"{METRIC_NAMES[metric_name]} {group.summary(metric_name).format()} over {seeds(len(group.seeds))}; "
            f"best seed {seed} (`{run.label}`).",
            "",
        ]
        f1_name = f"per_class_f1_{dataset}.png"
        plot_per_class_f1(group, folder / f1_name)
        lines += [f"![{dataset} per-class F1]({rel}/{f1_name})", ""]
        text = read_file(run, REPORTS[group.system])
        report = json.loads(text) if text else {}
        if "test" in report and "confusion_matrix" in report["test"]:
            cm_name = f"confusion_{dataset}.png"
            title = f"{dataset}: test confusion matrix, {group.title}, seed {seed}"
            plot_confusion(report["test"]["confusion_matrix"], report["labels"], title, folder / cm_name)
            lines += [f"![{dataset} confusion matrix]({rel}/{cm_name})", ""]
        else:
            lines += [f"(no {REPORTS[group.system]} in `{run.label}`: confusion matrix not drawn)", ""]
        lines += reliability_figure(dataset, group, run, read_file, folder, rel)
    return lines


def reliability_figure(
    dataset: str, group: Group, run: Run, read_file: FileReader, folder: Path, rel: str
) -> list[str]:
    """The best seed's reliability diagram on its labelled test predictions (nothing for an unlabelled test split)."""
    text = read_file(run, PREDICTIONS[group.system])
    try:
        labelled = labelled_probabilities(read_predictions(text, PREDICTIONS[group.system])) if text else None
    except (ValueError, pd.errors.ParserError):
        labelled = None
    if labelled is None:
        return []
    probs, label_ids = labelled
    name = f"reliability_{dataset}.png"
    title = f"{dataset}: test reliability, {group.title}, seed {run.params.get(SEED)}"
    bins = reliability(label_ids, probs)
    ece = ece_of(bins)
    plot_reliability(bins, ece, title, folder / name)
    return [f"![{dataset} reliability diagram]({rel}/{name})", "", f"Expected calibration error: {ece:.4f}.", ""]


def build_report(
    runs: Sequence[Run],
    reference: Mapping[str, Any],
    out: Path,
    read_file: FileReader,
    metric: str = AUTO,
    source: str = "dvc exp show --json",
) -> dict[str, Any]:
    """Write ``out`` (Markdown) and its figures in the folder ``out`` without suffix; return what it holds."""
    groups = group_entries(entries(runs), reference)
    found = comparisons(groups, metric)
    curves = learning_curves(groups, metric)
    best = best_per_dataset(groups, metric)
    figures = out.with_suffix("")
    rel = figures.name
    averaged = [(g, r) for g in groups if (r := seed_ensemble(g, read_file)) is not None]
    ensemble_lines, ensemble_files = seed_ensemble_table(averaged, rel)
    lines = [
        "# llmcls report",
        "",
        f"From `{source}`: {len(runs)} runs with test metrics (one per configuration and seed, the newest).",
        INTRO.format(metric=metric_text(metric)),
        "",
        "## Leaderboard",
        "",
        *leaderboard_table(groups, metric),
        "",
        *generated_table(groups),
        *ensemble_lines,
        *significance_section(found, metric),
    ]
    with staged_dir(figures, "report") as tmp:
        for name, ensemble in ensemble_files.items():
            ensemble.predictions.to_csv(tmp / name, index=False)
        lines += curves_section(curves, metric, tmp, rel)
        lines += best_section(best, metric, read_file, tmp, rel)
    with staged_file(out) as tmp_md:
        tmp_md.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return {"groups": groups, "comparisons": found, "curves": curves, "best": best, "seed_ensembles": averaged}
