"""Aggregation across seeds: mean ± std per configuration, paired significance tests, learning curves.

An entry is one system's test metrics in one run (the LLM, the TF-IDF baseline or their ensemble). Entries
that differ only in `train.seed` form a group; a group is one leaderboard row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from llmcls.evaluate.metrics import TASK_METRICS
from llmcls.experiments.runs import SEED, SYSTEM_METRICS, Run, identity

LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "hamming_loss"}
AUTO = "auto"  # a report's metric: each dataset's task's main one (accuracy, macro F1, Pearson)
# The leaderboard's own columns; every other identity param that differs from the reference is a "variant".
GROUP_KEYS = ("dataset", "model.name", "train.mode", "train.objective", "split.train_size")
# What each system's result depends on: the baseline never sees the LLM settings, so those are not its variant;
# the prompt-only row sees the data, the prompt and the base model, never a training setting.
SYSTEM_KEYS = {
    "baseline": ("dataset", "fetch.revision", "split.", "custom.", "baseline."),
    "prompt_only": ("dataset", "fetch.revision", "split.", "custom.", "preprocess.", "model.name", "model.revision"),
}
# Systems whose result does not depend on train.seed: one value, paired with each LLM seed in tests.
SEEDLESS = tuple(SYSTEM_KEYS)
ORDER = {"llm": 0, "ensemble": 1, "prompt_only": 2, "baseline": 3}
TEST_NAME = "paired t-test (two-sided, scipy.stats.ttest_rel)"


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n - 1) of one metric over seeds; std is NaN for a single seed."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        values = [float(v) for v in values]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        return cls(float(np.mean(values)) if values else math.nan, std, len(values))

    def format(self, digits: int = 4) -> str:
        if self.n == 0:
            return "—"
        if math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two configurations over the seeds both ran."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float  # b - a
    t: float
    p: float
    test: str = TEST_NAME


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Paired t-test of b against a (same seeds, same order). With fewer than 2 pairs, or differences that
    never vary, t and p are NaN: there is nothing to test."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) != len(b_arr):
        raise ValueError(f"paired samples differ in length: {len(a_arr)} and {len(b_arr)}")
    diff = b_arr - a_arr
    t = p = math.nan
    if len(diff) >= 2 and np.ptp(diff) > 0:
        result = stats.ttest_rel(b_arr, a_arr)
        t, p = float(result.statistic), float(result.pvalue)
    mean = float(diff.mean()) if len(diff) else math.nan
    return PairedTest(len(diff), float(a_arr.mean()), float(b_arr.mean()), mean, t, p)


@dataclass(frozen=True)
class Entry:
    """One system's test result in one run."""

    system: str  # a SYSTEM_METRICS key: llm | baseline | ensemble | prompt_only
    run: Run
    metrics: Mapping[str, Any]

    @property
    def seed(self) -> Any:
        return self.run.params.get(SEED)

    def config(self) -> tuple[tuple[str, Any], ...]:
        """What decides this result, without the seed (the baseline ignores the LLM's settings)."""
        params = own_params(self.system, identity(self.run.params, with_seed=False))
        return (("system", self.system), *sorted(params.items(), key=lambda kv: kv[0]))


def own_params(system: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The params ``system``'s result depends on (all of them for the LLM and the ensemble)."""
    if system not in SYSTEM_KEYS:
        return dict(params)
    return {k: v for k, v in params.items() if k.startswith(SYSTEM_KEYS[system])}


def entries(runs: Iterable[Run]) -> list[Entry]:
    """Every system's test metrics in every run that has them."""
    out = []
    for run in runs:
        for system in SYSTEM_METRICS:
            if (test := run.test_metrics(system)) is not None:
                out.append(Entry(system, run, test))
    return out


@dataclass(frozen=True)
class Group:
    """Entries of one configuration over seeds: one leaderboard row."""

    system: str
    params: Mapping[str, Any]  # the configuration without the seed
    entries: tuple[Entry, ...]
    variant: str  # params beyond GROUP_KEYS that differ from the reference, e.g. "preprocess.prompt_wrapping=False"

    def key(self, name: str) -> Any:
        return self.params.get(name)

    def by_seed(self, metric: str) -> dict[Any, float]:
        return {e.seed: float(e.metrics[metric]) for e in self.entries if metric in e.metrics}

    def summary(self, metric: str) -> Summary:
        return Summary.of(list(self.by_seed(metric).values()))

    def metric(self, metric: str = AUTO) -> str:
        """``metric``, or for auto the main metric of the task this group's results belong to."""
        return metric if metric != AUTO else task_metric(self.entries[0].metrics)

    @property
    def seeds(self) -> list[Any]:
        return sorted({e.seed for e in self.entries}, key=str)

    @property
    def train_seconds(self) -> Summary:
        values = [e.run.train_seconds for e in self.entries if e.system == "llm" and e.run.train_seconds]
        return Summary.of(values)

    @property
    def title(self) -> str:
        """Short description: model / mode for the LLM, the classical names otherwise."""
        if self.system == "baseline":
            head = "TF-IDF + logistic regression"
        elif self.system == "prompt_only":
            head = f"prompt-only: {self.key('model.name')}, no fine-tuning"
        elif self.system == "ensemble":
            head = f"ensemble: {self.key('model.name')} {self.key('train.mode')}{self.objective} + TF-IDF"
        else:
            head = f"{self.key('model.name')} {self.key('train.mode')}{self.objective}"
        return head + (f" [{self.variant}]" if self.variant else "")

    @property
    def objective(self) -> str:
        """' generative (scored)' for the generative objective: the label's text, scored; '' for the head."""
        return " generative (scored)" if self.key("train.objective") == "generative" else ""

    def generated(self, key: str) -> Summary:
        """A generated-mode number (generative objective) over seeds: in_label_set_share, accuracy, f1_macro."""
        return Summary.of([e.metrics["generated"][key] for e in self.entries if key in e.metrics.get("generated", {})])


def task_metric(metrics: Mapping[str, Any]) -> str:
    """The main metric of the task a run's test metrics belong to (told apart by the metrics each task has)."""
    task = REGRESSION if "pearson" in metrics else MULTI_LABEL if "hamming_loss" in metrics else SINGLE_LABEL
    return TASK_METRICS[task][0]


def variant_of(params: Mapping[str, Any], reference: Mapping[str, Any]) -> str:
    """The params outside GROUP_KEYS where a configuration differs from the reference (the current params)."""
    diffs = [
        f"{k}={params[k]}"
        for k in sorted(params)
        if k not in GROUP_KEYS and k in reference and params[k] != reference[k]
    ]
    return ", ".join(diffs)


def group_entries(items: Iterable[Entry], reference: Mapping[str, Any]) -> list[Group]:
    """Group entries by configuration (seed left out); within a group one entry per seed, the newest."""
    buckets: dict[tuple, dict[Any, Entry]] = {}
    for entry in items:
        buckets.setdefault(entry.config(), {})[entry.seed] = entry  # runs are oldest first: the newest wins
    groups = []
    for config, by_seed in buckets.items():
        params = dict(config[1:])
        ref = own_params(config[0][1], identity(reference, with_seed=False))
        groups.append(Group(config[0][1], params, tuple(by_seed.values()), variant_of(params, ref)))
    return sorted(groups, key=_order)


def _order(group: Group) -> tuple:
    size = group.key("split.train_size")
    return (
        str(group.key("dataset")),
        ORDER[group.system],
        str(group.key("model.name")),
        str(group.key("train.mode")),
        math.inf if size is None else size,
        group.variant,
    )


def best_per_dataset(groups: Iterable[Group], metric: str = AUTO) -> dict[str, Group]:
    """The group with the best mean ``metric`` in each dataset (lowest for a loss or an error; auto: the
    task's main metric)."""
    best: dict[str, Group] = {}
    for group in groups:
        name = group.metric(metric)
        sign = -1 if name in LOWER_IS_BETTER else 1
        summary = group.summary(name)
        if summary.n == 0:
            continue
        dataset = group.key("dataset")
        if dataset not in best or sign * summary.mean > sign * best[dataset].summary(name).mean:
            best[dataset] = group
    return best


@dataclass(frozen=True)
class Comparison:
    """Two groups that differ in one setting (or in the system), tested over their common seeds."""

    a: Group
    b: Group
    what: str  # e.g. "train.mode: lora -> full", or "system: baseline -> llm"
    metric: str
    result: PairedTest


def _differences(a: Group, b: Group) -> list[str]:
    keys = (a.params.keys() | b.params.keys()) - {"system"}
    return sorted(k for k in keys if k in a.params and k in b.params and a.params[k] != b.params[k])


def comparisons(groups: Sequence[Group], metric: str = AUTO) -> list[Comparison]:
    """Paired tests for every two groups of the same dataset and train size that differ in exactly one
    setting (LoRA vs full, with vs without prompt wrapping, ...), and for the LLM against its baseline and
    its ensemble. Only seeds both groups ran are paired; fewer than 2 pairs are skipped."""
    out = []
    for i, first in enumerate(groups):
        for second in groups[i + 1 :]:
            if (first.key("dataset"), first.key("split.train_size")) != (
                second.key("dataset"),
                second.key("split.train_size"),
            ):
                continue
            pair = _comparable(first, second)
            if pair is None:
                continue
            a, b, what = pair
            name = b.metric(metric)
            by_seed_a, by_seed_b = a.by_seed(name), b.by_seed(name)
            if a.system in SEEDLESS:  # one value whatever the seed: pair it with each LLM seed
                seeds = sorted(by_seed_b, key=str)
                values_a = [next(iter(by_seed_a.values()))] * len(seeds)
            else:
                seeds = sorted(set(by_seed_a) & set(by_seed_b), key=str)
                values_a = [by_seed_a[s] for s in seeds]
            if len(seeds) < 2:
                continue
            out.append(Comparison(a, b, what, name, paired_test(values_a, [by_seed_b[s] for s in seeds])))
    return out


def _comparable(first: Group, second: Group) -> tuple[Group, Group, str] | None:
    """(a, b, what differs) when the two groups make a paired comparison, else None."""
    systems = {first.system, second.system}
    if systems == {"llm"}:
        diffs = _differences(first, second)
        if len(diffs) != 1:
            return None
        key = diffs[0]
        return first, second, f"{key}: {first.params[key]} -> {second.params[key]}"
    if len(systems) == 2 and "llm" in systems:
        llm, other = (first, second) if first.system == "llm" else (second, first)
        if any(llm.params[k] != other.params[k] for k in llm.params.keys() & other.params.keys()):
            return None
        return other, llm, f"{other.system} -> llm"
    return None


@dataclass(frozen=True)
class Curve:
    """A metric against train size for one configuration: (train size, summary over seeds) points."""

    dataset: str
    label: str
    points: tuple[tuple[int | None, Summary], ...]  # a None size means all rows
    metric: str = "accuracy"


def learning_curves(groups: Iterable[Group], metric: str = AUTO) -> list[Curve]:
    """One curve per configuration that was run at two or more train sizes (everything else equal)."""
    buckets: dict[tuple, list[Group]] = {}
    for group in groups:
        rest = (group.system, *sorted((k, v) for k, v in group.params.items() if k != "split.train_size"))
        buckets.setdefault(rest, []).append(group)
    curves = []
    for members in buckets.values():
        if len(members) < 2:
            continue
        name = members[0].metric(metric)
        points = sorted(
            ((g.key("split.train_size"), g.summary(name)) for g in members),
            key=lambda point: math.inf if point[0] is None else point[0],
        )
        curves.append(Curve(str(members[0].key("dataset")), members[0].title, tuple(points), name))
    return sorted(curves, key=lambda c: (c.dataset, c.label))


def seeds(n: int) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def size_name(value: Any) -> str:
    """A train size as the report shows it: null means every row."""
    return "all" if value is None else str(value)
