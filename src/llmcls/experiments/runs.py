"""DVC experiments as flat records: what `llmcls sweep` and `llmcls report` read from `dvc exp show --json`.

A record is one finished (or queued) run: the workspace, a commit, or an experiment branched from a commit,
with its params flattened to dotted keys and its metrics files as they are. Runs of the same configuration
and seed are one run: the newest is kept (a commit that did not touch the metrics repeats its parent's).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcls.config.params import read_yaml
from llmcls.core.errors import LlmclsError

PARAMS_FILE = "params.yaml"
LLM_METRICS = "metrics/eval.json"
TRAIN_METRICS = "metrics/train/metrics.json"
# The train stage's run log (timings, memory): git-tracked, not a DVC metric, so `llmcls report` reads it at
# each run's commit.
TRAIN_LOG = "logs/train.json"
# Whose test metrics a run carries, and where: the fine-tuned LLM, the TF-IDF baseline, their blend, and the
# base model with no fine-tuning (label-word scoring).
SYSTEM_METRICS = {
    "llm": LLM_METRICS,
    "baseline": "metrics/baseline/eval.json",
    "ensemble": "metrics/ensemble/eval.json",
    "prompt_only": "metrics/prompt_only/eval.json",
}
# Settings that say where files are or how fast a run goes, not what it learns: never part of its identity.
NOT_IDENTITY = ("fetch.sources", "evaluate.batch_size", "submit.")  # fetch.revision picks the data: identity
SEED = "train.seed"
BEST = "train.metric_for_best"
# Keys params.yaml gained after runs were recorded without them, each with the behaviour those runs had. An
# older run reads as these values: a sweep asking for `train.objective=generative` must not take a run from
# before the key existed for it, and an older run groups with today's runs of the same settings.
BEFORE_KEY_EXISTED: dict[str, Any] = {
    "fetch.revision": None,  # no pin: the catalog's (the same data for local and package sources)
    "model.revision": None,
    "train.objective": "head",
    "train.verbalizer": None,
    "evaluate.max_new_tokens": 16,
    "train.head_init": "random",
    "train.min_steps": 0,
    "preprocess.bad_rows": "error",
    "custom.sep": None,
    "custom.header": True,
    "custom.names": None,
    "custom.encoding": "utf-8",
    "custom.label_names": None,
    "custom.label_pattern": None,
    "train.max_tokens": None,
    "train.base_precision": "auto",  # what auto means today (fp32 on CPU), as every earlier run had on CPU
    "evaluate.max_tokens": None,
    "train.launch.num_machines": 1,
    # No floor: the text got max_length minus the template. (Not 128: a run with max_length 128 left less.)
    "preprocess.min_text_tokens": 0,
    "preprocess.class_labels_max_tokens": None,  # null: the names always listed, however long
    "train.calibration": "none",  # probabilities as the model gave them
    "task": None,  # the dataset's own, single-label for every dataset there was
    "custom.label_columns": None,
    "custom.label_separator": None,
    "train.validations": 2,  # unused then: every run set train.eval_steps
    "train.thresholds": "tuned",  # no multi-label run existed to have another
}
SCOPES = {"all-commits": ["-A"], "all-branches": ["-a"], "head": []}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists become tuples so values can be compared and hashed."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def normalise_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened params; an older run's `model: <name>` (before `model` became a section) reads as model.name."""
    flat = flatten(params)
    if "model" in flat:
        flat["model.name"] = flat.pop("model")
    return flat


def task_of(flat: Mapping[str, Any]) -> str:
    """A run's task: its `task` param, else its dataset's own (single-label if unknown)."""
    from llmcls.config.catalog import dataset_spec

    task = flat.get("task")
    if task is None:
        try:
            task = dataset_spec(str(flat.get("dataset"))).task if flat.get("dataset") != "custom" else None
        except LlmclsError:  # a dataset this version no longer knows
            task = None
    return task or "single_label"


def main_metric(flat: Mapping[str, Any]) -> str:
    """The main metric of a run's task."""
    from llmcls.evaluate.metrics import TASK_METRICS

    return TASK_METRICS[task_of(flat)][0]


def identity(params: Mapping[str, Any], with_seed: bool = True) -> dict[str, Any]:
    """The params that decide what a run learns (optionally without its seed). `train.metric_for_best: auto`
    reads as the metric it picks for the run's task, so a run from before auto existed (`accuracy`) is the
    same configuration as today's single-label default."""
    kept = {k: v for k, v in params.items() if not k.startswith(NOT_IDENTITY) and (with_seed or k != SEED)}
    if kept.get(BEST) == "auto":
        kept[BEST] = main_metric(kept)
    return kept


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal on every identity key both have: a key an older run did not have yet is not compared."""
    ia, ib = identity(a), identity(b)
    return all(ia[k] == ib[k] for k in ia.keys() & ib.keys())


@dataclass(frozen=True)
class Run:
    """One row of `dvc exp show`: the workspace, a commit, or an experiment (queued, running or done)."""

    rev: str
    name: str | None
    baseline: str | None
    timestamp: str | None
    state: str  # done | queued | running | failed
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A running queued experiment's `dvc exp exec-run` process and its temporary copy of the project (None
    # before the worker started it, and for every other state).
    pid: int | None = None
    root: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.rev[:7]

    def test_metrics(self, system: str) -> dict[str, Any] | None:
        """The test-split metrics of ``system`` (a SYSTEM_METRICS key), or None when absent."""
        test = self.metrics.get(SYSTEM_METRICS[system], {}).get("test")
        return test if test and len(test) > 1 else None  # more than its row count: scored

    @property
    def train_seconds(self) -> float | None:
        # Runs before the run logs carried the time among their metrics.
        for source in (TRAIN_LOG, TRAIN_METRICS):
            if seconds := self.metrics.get(source, {}).get("train_runtime_s"):
                return seconds
        return None


def with_run_logs(runs: list[Run], read: Callable[[Run, str], str | None]) -> list[Run]:
    """The runs with their train run log (read at each run's commit) beside their metrics."""
    out = []
    for run in runs:
        text = read(run, TRAIN_LOG)
        try:
            log = json.loads(text) if text else None
        except json.JSONDecodeError:
            log = None
        out.append(dataclasses.replace(run, metrics=run.metrics | {TRAIN_LOG: log}) if log else run)
    return out


def _files(data: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """{file: its data} of a row's params or metrics, skipping files DVC could not read."""
    files = (data or {}).get(kind) or {}
    return {path: entry["data"] for path, entry in files.items() if isinstance(entry, dict) and "data" in entry}


def _record(
    state: Mapping[str, Any],
    name: str | None,
    baseline: str | None,
    status: str,
    local: Mapping[str, Any] | None = None,
) -> Run | None:
    data = state.get("data")
    if not data or state.get("error"):
        return None
    params = _files(data, "params").get(PARAMS_FILE)
    if params is None:
        return None
    return Run(
        rev=state["rev"],
        name=name,
        baseline=baseline,
        timestamp=data.get("timestamp"),
        state=status,
        params=BEFORE_KEY_EXISTED | normalise_params(params),
        metrics=_files(data, "metrics"),
        pid=(local or {}).get("pid"),
        root=(local or {}).get("root"),
    )


def parse_exp_show(rows: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Every readable row of `dvc exp show --json` output: commits, the workspace and their experiments."""
    runs: list[Run] = []
    for commit in rows:
        if run := _record(commit, commit.get("name"), None if commit["rev"] == "workspace" else commit["rev"], "done"):
            runs.append(run)
        for exp in commit.get("experiments") or []:
            executor = exp.get("executor") or {}
            status = executor.get("state") or "done"
            status = "done" if status == "success" else status
            last = (exp.get("revs") or [None])[0]
            name = exp.get("name") or last and last.get("name")
            if last and (run := _record(last, name, commit["rev"], status, executor.get("local"))):
                runs.append(run)
    return runs


def finished(runs: Iterable[Run]) -> list[Run]:
    """Runs with LLM test metrics, one per configuration and seed: the newest (the workspace counts as the
    oldest, so a clean workspace never doubles its commit)."""
    done = sorted((r for r in runs if r.state == "done" and r.test_metrics("llm")), key=lambda r: r.timestamp or "")
    kept: list[Run] = []
    for run in reversed(done):
        if not any(same_config(run.params, k.params) for k in kept):
            kept.append(run)
    return kept[::-1]


def lock_agrees(run: Run, lock_text: str | None) -> bool:
    """Whether the params each stage ran with (dvc.lock) are the run's params.yaml. A commit can carry a
    params.yaml changed after its last `dvc repro`: its metrics then belong to other params."""
    if not lock_text:
        return True
    recorded: dict[str, Any] = {}
    for stage in (read_yaml(lock_text) or {}).get("stages", {}).values():
        recorded |= normalise_params(flatten((stage.get("params") or {}).get(PARAMS_FILE) or {}))
    return all(run.params[k] == v for k, v in recorded.items() if k in run.params)


def exp_show(scope: str = "all-commits", cwd: str | None = None) -> list[dict[str, Any]]:
    """The JSON of `dvc exp show` over ``scope`` (all-commits | all-branches | head)."""
    if scope not in SCOPES:
        raise LlmclsError(f"unknown scope {scope!r}; choose from {list(SCOPES)}")
    cmd = ["dvc", "exp", "show", "--json", *SCOPES[scope]]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise LlmclsError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def exp_ref(commit: str, name: str) -> str:
    """The git ref DVC keeps experiment ``name`` of baseline ``commit`` under (pushed and pulled as it is)."""
    return f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"


def file_at(rev: str, path: str, cwd: str | None = None) -> str | None:
    """A git-tracked file (such as an eval report) as committed in ``rev``; the workspace reads the file."""
    if rev == "workspace":
        try:
            with open(path if cwd is None else f"{cwd}/{path}", encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return None
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, cwd=cwd)
    return result.stdout if result.returncode == 0 else None
