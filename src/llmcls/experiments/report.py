"""`llmcls report`: the leaderboard, seed ensembles, significance tests, learning curves and best-run figures as
Markdown + PNG.

Reads runs (experiments.py), aggregates them over seeds (aggregate.py, seed_ensemble.py) and writes one Markdown
file whose figures (and the seed ensembles' predictions) sit in a folder beside it. Everything is on each
dataset's test split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmcls.core.outputs import staged_dir, staged_file
from llmcls.experiments.aggregate import (
    LOWER_IS_BETTER,
    Comparison,
    Curve,
    Group,
    best_per_dataset,
    comparisons,
    entries,
    group_entries,
    learning_curves,
)
from llmcls.experiments.runs import SEED, Run
from llmcls.experiments.seed_ensemble import SeedEnsemble, seed_ensemble

REPORTS = {
    "llm": "metrics/eval_report.json",
    "baseline": "metrics/baseline/eval_report.json",
    "ensemble": "metrics/ensemble/eval_report.json",
    "prompt_only": "metrics/prompt_only/eval_report.json",
}
METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro F1", "log_loss": "log loss"}
# Reads a git-tracked file as a run committed it: (run, path) -> text, or None.
FileReader = Callable[[Run, str], "str | None"]


def seeds(n: int) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _size(value: Any) -> str:
    return "all" if value is None else str(value)


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def leaderboard_table(groups: Sequence[Group], metric: str) -> list[str]:
    """Markdown rows: mean ± std over seeds per configuration; the best ``metric`` per dataset in bold."""
    best = best_per_dataset(groups, metric)
    lines = [
        "| dataset | system | train size | seeds | accuracy | macro F1 | log loss | train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        cells = {m: group.summary(m).format() for m in METRIC_NAMES}
        if best.get(group.key("dataset")) is group:
            cells[metric] = f"**{cells[metric]}**"
        seconds = group.train_seconds
        time_cell = f"{seconds.mean:.0f}" if seconds.n and group.system != "baseline" else "—"
        lines.append(
            f"| {group.key('dataset')} | {group.title} | {_size(group.key('split.train_size'))} | "
            f"{len(group.seeds)} | {cells['accuracy']} | {cells['f1_macro']} | {cells['log_loss']} | {time_cell} |"
        )
    return lines


def generated_table(groups: Sequence[Group]) -> list[str]:
    """The generative objective's free answers: the share inside the label set and the metrics that count an
    answer outside it as wrong (the scored numbers are the leaderboard's)."""
    rows = [g for g in groups if g.system == "llm" and g.generated("in_label_set_share").n]
    if not rows:
        return []
    lines = [
        "## Generated answers",
        "",
        "The generative models' greedy answers on the test split: the share that names a class exactly, and the",
        "accuracy and macro F1 when an answer outside the label set counts as wrong.",
        "",
        "| dataset | system | train size | seeds | in the label set | accuracy | macro F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in rows:
        cells = [g.generated(k).format() for k in ("in_label_set_share", "accuracy", "f1_macro")]
        lines.append(
            f"| {g.key('dataset')} | {g.title} | {_size(g.key('split.train_size'))} | {len(g.seeds)} | "
            + " | ".join(cells)
            + " |"
        )
    return [*lines, ""]


def seed_ensemble_table(
    found: Sequence[tuple[Group, SeedEnsemble | str]], rel: str
) -> tuple[list[str], dict[str, SeedEnsemble]]:
    """The seed ensembles' section: Markdown lines, and {file name: ensemble} for the averaged predictions."""
    if not found:
        return [], {}
    lines = [
        "## Seed ensembles",
        "",
        "Each LLM configuration run with two or more seeds, its seeds' test probabilities averaged: an ensemble",
        "that needs no training beyond the seeds' runs. Train time: the seeds' sum. The last column: accuracy",
        "minus the seeds' mean accuracy (the leaderboard's row). The averaged predictions are in the CSV named.",
        "",
        "| dataset | system | train size | seeds | accuracy | macro F1 | log loss | vs mean | train time (s) "
        "| predictions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    files: dict[str, SeedEnsemble] = {}
    for group, result in found:
        size = _size(group.key("split.train_size"))
        head = f"| {group.key('dataset')} | {group.title} | {size} | {len(group.seeds)} |"
        if isinstance(result, str):
            lines.append(f"{head} — | — | — | — | — | not averaged: {result} |")
            continue
        name = f"seed_ensemble_{group.key('dataset')}_{len(files) + 1}.csv"
        files[name] = result
        m = result.metrics or {}
        gain = m["accuracy"] - group.summary("accuracy").mean if m else math.nan
        seconds = "—" if result.train_seconds is None else f"{result.train_seconds:.0f}"
        lines.append(
            f"{head} {_fmt(m.get('accuracy', math.nan))} | {_fmt(m.get('f1_macro', math.nan))} | "
            f"{_fmt(m.get('log_loss', math.nan))} | {'—' if math.isnan(gain) else f'{gain:+.4f}'} | {seconds} | "
            f"[{name}]({rel}/{name}) |"
        )
    return [*lines, ""], files


def comparison_table(found: Sequence[Comparison]) -> list[str]:
    lines = [
        "| dataset | train size | comparison (a -> b) | pairs | mean a | mean b | b - a | t | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in found:
        r = c.result
        lines.append(
            f"| {c.a.key('dataset')} | {_size(c.a.key('split.train_size'))} | {c.what} ({c.b.title}) | {r.n} | "
            f"{_fmt(r.mean_a)} | {_fmt(r.mean_b)} | {r.mean_diff:+.4f} | {_fmt(r.t, 2)} | {_fmt(r.p, 4)} |"
        )
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(curves: Sequence[Curve], dataset: str, metric: str, path: Path) -> None:
    """Metric vs train size with ±1 std error bars, one line per configuration; sizes are evenly spaced
    categories (100, 500, 1000, 2000, all) so small sizes stay readable."""
    plt = _pyplot()
    sizes = sorted({p[0] for c in curves for p in c.points}, key=lambda s: math.inf if s is None else s)
    x_of = {s: i for i, s in enumerate(sizes)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in curves:
        xs = [x_of[s] for s, _ in curve.points]
        means = [p.mean for _, p in curve.points]
        errs = [0 if math.isnan(p.std) else p.std for _, p in curve.points]
        style = "--" if curve.label.startswith("TF-IDF") else "-"
        ax.errorbar(xs, means, yerr=errs, marker="o", capsize=4, linestyle=style, label=curve.label)
    ax.set_xticks(range(len(sizes)), [_size(s) for s in sizes])
    ax.set_xlabel("training examples (split.train_size)")
    ax.set_ylabel(f"test {METRIC_NAMES[metric]}")
    ax.set_title(f"{dataset}: learning curve (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_per_class_f1(group: Group, path: Path) -> None:
    """Per-class test F1 of a configuration, mean ± std over its seeds."""
    plt = _pyplot()
    per_seed = [e.metrics.get("f1_per_class") or {} for e in group.entries]
    names = sorted({n for d in per_seed for n in d})
    values = [[d[n] for d in per_seed if n in d] for n in names]
    means = [float(np.mean(v)) for v in values]
    stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
    bars = ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue")
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], padding=6, fontsize=8)
    tilt = len(names) > 4
    ax.set_xticks(range(len(names)), names, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("test F1")
    ax.set_xlabel("class")
    over = seeds(len(group.seeds))
    ax.set_title(f"{group.key('dataset')}: per-class test F1 (mean ± std over {over})\n{group.title}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> None:
    """Counts with the row-normalised share in each cell (rows: true class, columns: predicted)."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.7 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def best_run(group: Group, metric: str) -> Run:
    """The seed of ``group`` with the best ``metric``."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return max(group.entries, key=lambda e: sign * float(e.metrics[metric])).run


def build_report(
    runs: Sequence[Run],
    reference: Mapping[str, Any],
    out: Path,
    read_file: FileReader,
    metric: str = "accuracy",
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
        "Every number is on the dataset's test split (SST-2: the 872-row GLUE dev set); mean ± sample std",
        f"(n - 1) over seeds. Bold: the best mean {METRIC_NAMES[metric]} per dataset. Systems: the fine-tuned",
        "LLM, the TF-IDF + logistic regression baseline on the same splits, their probability ensemble, and the",
        "prompt-only row: the base model with no fine-tuning, scoring each label's text after the same prompt.",
        "The baseline and the prompt-only row do not depend on train.seed, so their std is 0. Bracketed:",
        "settings that differ from params.yaml.",
        "",
        "## Leaderboard",
        "",
        *leaderboard_table(groups, metric),
        "",
        *generated_table(groups),
        *ensemble_lines,
        "## Significance tests",
        "",
    ]
    if found:
        lines += [
            f"Test {METRIC_NAMES[metric]} of configurations that differ in one setting, paired by seed: "
            f"{found[0].result.test}. p is not corrected for the number of tests; with 3 seeds only large",
            "effects can reach significance. Against the baseline or the prompt-only row (one value) it is a"
            " one-sample test of the per-seed differences.",
            "",
            *comparison_table(found),
        ]
    else:
        lines.append("No two configurations share two or more seeds yet.")
    lines += ["", "## Learning curves", ""]
    with staged_dir(figures) as tmp:
        for name, ensemble in ensemble_files.items():
            ensemble.predictions.to_csv(tmp / name, index=False)
        datasets = sorted({c.dataset for c in curves})
        for dataset in datasets:
            name = f"learning_curve_{dataset}.png"
            plot_learning_curves([c for c in curves if c.dataset == dataset], dataset, metric, tmp / name)
            lines += [f"![{dataset} learning curve]({rel}/{name})", ""]
            for curve in (c for c in curves if c.dataset == dataset):
                shown = ", ".join(f"{_size(s)}: {p.format()} (n={p.n})" for s, p in curve.points)
                lines.append(f"- {curve.label}: {shown}")
            lines.append("")
        if not datasets:
            lines += ["No configuration was run at two or more train sizes yet.", ""]
        lines += ["## Best configuration per dataset", ""]
        for dataset, group in sorted(best.items()):
            run = best_run(group, metric)
            lines += [
                f"### {dataset}: {group.title}, train size {_size(group.key('split.train_size'))}",
                "",
                f"{METRIC_NAMES[metric]} {group.summary(metric).format()} over {seeds(len(group.seeds))}; "
                f"best seed {run.params.get(SEED)} (`{run.label}`).",
                "",
            ]
            f1_name = f"per_class_f1_{dataset}.png"
            plot_per_class_f1(group, tmp / f1_name)
            lines += [f"![{dataset} per-class F1]({rel}/{f1_name})", ""]
            text = read_file(run, REPORTS[group.system])
            report = json.loads(text) if text else {}
            if "test" in report and "confusion_matrix" in report["test"]:
                cm_name = f"confusion_{dataset}.png"
                title = f"{dataset}: test confusion matrix, {group.title}, seed {run.params.get(SEED)}"
                plot_confusion(report["test"]["confusion_matrix"], report["labels"], title, tmp / cm_name)
                lines += [f"![{dataset} confusion matrix]({rel}/{cm_name})", ""]
            else:
                lines += [f"(no {REPORTS[group.system]} in `{run.label}`: confusion matrix not drawn)", ""]
    with staged_file(out) as tmp_md:
        tmp_md.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return {"groups": groups, "comparisons": found, "curves": curves, "best": best, "seed_ensembles": averaged}
