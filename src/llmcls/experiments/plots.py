"""The report's figures (matplotlib, written as PNG files): learning curves, per-class F1, confusion matrices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmcls.evaluate.metrics import METRIC_NAMES
from llmcls.experiments.aggregate import Curve, Group, seeds, size_name


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
    ax.set_xticks(range(len(sizes)), [size_name(s) for s in sizes])
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
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.7 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    display = ConfusionMatrixDisplay(shares, display_labels=list(labels))
    display.plot(ax=ax, cmap="Blues", xticks_rotation=45, values_format=".0%", im_kw={"vmin": 0, "vmax": 1})
    for (i, j), text in np.ndenumerate(display.text_):  # the count above its share
        text.set_text(f"{counts[i, j]}\n{shares[i, j]:.0%}")
        text.set_fontsize(8)
    display.im_.colorbar.set_label("share of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_reliability(bins: Sequence[dict], ece: float, title: str, path: Path) -> None:
    """A reliability diagram: accuracy against mean confidence per confidence bin (the diagonal is perfect
    calibration), with each bin's share of rows as bars below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=f"model (ECE {ece:.4f})")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1.02)
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    total = sum(b["rows"] for b in bins)
    bottom.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["rows"] / total for b in bins], width=1 / 16)
    bottom.set_xlabel("confidence (top class)")
    bottom.set_ylabel("share of rows")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
