"""params.yaml, loaded once into typed, frozen dataclasses that validate themselves.

Every setting lives in params.yaml; these classes hold no defaults of their own, so a missing key is an
error rather than a silent second default. All problems in the file are reported together.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmcls.core.errors import LlmclsError, fail_on


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: `5e-05` is a number, as DVC (ruamel) writes and reads it.
    PyYAML alone reads it as the string '5e-05', so `dvc exp run -S train.learning_rate=5e-5` would fail."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?\.?\d*[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text the way DVC does for numbers (see YamlLoader)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader subclass)


FINE_TUNING_MODES = ("lora", "qlora", "full")
HEADS = ("linear", "mlp")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The frozen base under LoRA: compute = in train.precision's bf16 / fp16 (half the memory; trainable weights stay
# fp32); auto = compute on CUDA, fp32 on CPU (measured there: 7% faster, not worth a second numerics).
BASE_PRECISIONS = ("auto", "fp32", "compute")
SOURCES = ("local", "package", "hub", "kaggle")
# One accelerate config file per strategy in configs/accelerate/ (dvc.yaml builds the path).
LAUNCH_STRATEGIES = ("single", "ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp")
SUBMITTERS = ("llm", "baseline", "ensemble")
HEAD_INITS = ("random", "linear_probe")
BAD_ROWS = ("error", "skip")
OBJECTIVES = ("head", "generative")


class SectionError(Exception):
    """Problems found by one section's ``__post_init__``; the loader prefixes them with the key path."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _check(problems: list[str]) -> None:
    if problems:
        raise SectionError(problems)


def revision_problems(revision: str | None) -> list[str]:
    """A pin is a commit: a branch or tag name can point at other bytes tomorrow."""
    if revision is None or re.fullmatch(r"[0-9a-f]{40}", revision):
        return []
    return [f"revision: {revision!r} is not a commit sha (40 hex digits); branches and tags move"]


@dataclass(frozen=True)
class FetchParams:
    sources: tuple[str, ...]
    revision: str | None  # a hub dataset's commit, over the catalog's pin

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        problems = [f"sources: unknown {bad}, choose from {list(SOURCES)}"] if bad or not self.sources else []
        _check(problems + revision_problems(self.revision))


@dataclass(frozen=True)
class ModelParams:
    """The base model and the classification head put on it."""

    name: str
    head: str
    head_dropout: float
    trust_remote_code: bool
    revision: str | None  # a hub model's commit, over the catalog's pin

    def __post_init__(self) -> None:
        problems = []
        if (problem := model_problem(self.name)) is not None:
            problems.append(f"name: {problem}")
        if self.head not in HEADS:
            problems.append(f"head: {self.head!r} is not one of {list(HEADS)}")
        if not 0 <= self.head_dropout < 1:
            problems.append(f"head_dropout: {self.head_dropout} must be in [0, 1)")
        _check(problems + revision_problems(self.revision))


@dataclass(frozen=True)
class CustomParams:
    """The ``custom`` dataset: any tabular file with configurable columns."""

    train_path: str | None
    test_path: str | None
    text_columns: tuple[str, ...]
    label_column: str
    id_column: str | None
    sep: str | None  # column separator; None: by extension (CSV ',', TSV / TXT tab)
    header: bool  # False: the first row is data; `names` names the columns
    names: tuple[str, ...] | None
    encoding: str
    label_names: str | dict[str, str] | None  # raw label -> class name, or a file with one name per line
    label_pattern: str | None  # a regex whose one group captures the label from the raw label cell

    def __post_init__(self) -> None:
        problems = ["text_columns: name at least one column"] if not self.text_columns else []
        if not self.header and not self.names:
            problems.append("names: a file with header: false needs its column names, e.g. names: [text, label]")
        if self.names is not None and len(set(self.names)) != len(self.names):
            problems.append(f"names: {list(self.names)} has duplicates")
        try:
            "".encode(self.encoding)
        except LookupError:
            problems.append(f"encoding: unknown encoding {self.encoding!r}")
        problems += label_pattern_problems(self.label_pattern)
        if isinstance(self.label_names, dict) and len(set(self.label_names.values())) != len(self.label_names):
            problems.append(f"label_names: two labels share a name in {self.label_names}")
        _check(problems)


def label_pattern_problems(pattern: str | None) -> list[str]:
    """A label pattern must compile and capture exactly one group (the label)."""
    if pattern is None:
        return []
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        return [f"label_pattern: {pattern!r} is not a regular expression: {err}"]
    return [] if groups == 1 else [f"label_pattern: {pattern!r} must have exactly one (group): the label"]


@dataclass(frozen=True)
class PreprocessParams:
    prompt_wrapping: bool
    template: str
    max_length: int
    min_text_tokens: int  # a template longer than max_length - this still gets this many text tokens
    class_labels_max_tokens: int | None  # {class_labels} lists the names only while they take at most this
    # many tokens; null: always
    truncation_side: str
    bad_rows: str  # error: stop at the first bad row (all listed) | skip: drop them and report which

    def __post_init__(self) -> None:
        problems = [] if self.bad_rows in BAD_ROWS else [f"bad_rows: {self.bad_rows!r} is not one of {list(BAD_ROWS)}"]
        if self.prompt_wrapping and "{text}" not in self.template:
            problems.append("template: must contain the {text} placeholder")
        if self.max_length < 16:
            problems.append(f"max_length: {self.max_length} is too small (>= 16)")
        if self.class_labels_max_tokens is not None and self.class_labels_max_tokens < 0:
            problems.append(f"class_labels_max_tokens: {self.class_labels_max_tokens} must be >= 0")
        if not 8 <= self.min_text_tokens <= self.max_length:
            problems.append(f"min_text_tokens: {self.min_text_tokens} must be between 8 and max_length")
        if self.truncation_side not in ("right", "left"):
            problems.append(f"truncation_side: {self.truncation_side!r} is not 'right' or 'left'")
        _check(problems)


@dataclass(frozen=True)
class SplitParams:
    val_fraction: float
    test_fraction: float
    train_size: int | None
    class_quota: int | dict[str, int] | None
    seed: int

    def __post_init__(self) -> None:
        problems = []
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0 < value < 1:
                problems.append(f"{key}: {value} must be between 0 and 1 (exclusive)")
        if self.train_size is not None and self.train_size < 2:
            problems.append(f"train_size: {self.train_size} must be >= 2 or null for all rows")
        quotas = self.class_quota.values() if isinstance(self.class_quota, dict) else [self.class_quota]
        if any(q is not None and (not isinstance(q, int) or q < 1) for q in quotas):
            problems.append(f"class_quota: {self.class_quota} must be a positive int or a mapping label -> int")
        _check(problems)


@dataclass(frozen=True)
class LoraParams:
    r: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...] | str
    bias: str
    use_dora: bool
    use_rslora: bool

    def __post_init__(self) -> None:
        problems = []
        if self.bias not in ("none", "all", "lora_only"):
            problems.append(f"bias: {self.bias!r} is not none, all or lora_only")
        if self.r < 1:
            problems.append(f"r: {self.r} must be >= 1")
        if self.alpha < 1:
            problems.append(f"alpha: {self.alpha} must be >= 1")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout: {self.dropout} must be in [0, 1)")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            problems.append(f"target_modules: {self.target_modules!r} must be a list or 'all-linear'")
        _check(problems)


@dataclass(frozen=True)
class QloraParams:
    """The quantised base of ``train.mode: qlora`` (bitsandbytes, CUDA only)."""

    bits: int
    quant_type: str
    double_quant: bool
    compute_dtype: str

    def __post_init__(self) -> None:
        problems = []
        if self.bits not in (4, 8):
            problems.append(f"bits: {self.bits} is not 4 or 8")
        if self.quant_type not in ("nf4", "fp4"):
            problems.append(f"quant_type: {self.quant_type!r} is not nf4 or fp4")
        if self.compute_dtype not in ("bf16", "fp16", "fp32"):
            problems.append(f"compute_dtype: {self.compute_dtype!r} is not bf16, fp16 or fp32")
        _check(problems)


@dataclass(frozen=True)
class LaunchParams:
    """How dvc.yaml's `accelerate launch` runs the train stage."""

    num_processes: int
    strategy: str

    def __post_init__(self) -> None:
        problems = []
        if self.num_processes < 1:
            problems.append(f"num_processes: {self.num_processes} must be >= 1")
        if self.strategy not in LAUNCH_STRATEGIES:
            problems.append(f"strategy: {self.strategy!r} is not one of {list(LAUNCH_STRATEGIES)}")
        if self.strategy == "single" and self.num_processes != 1:
            problems.append(f"num_processes: {self.num_processes} processes need strategy ddp, deepspeed-* or fsdp")
        _check(problems)


@dataclass(frozen=True)
class TrainParams:
    mode: str
    seed: int
    epochs: float
    max_steps: int
    min_steps: int
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    weight_decay: float
    warmup_ratio: float
    lr_scheduler: str
    max_grad_norm: float
    eval_steps: int
    metric_for_best: str
    group_by_length: bool
    precision: str
    torch_compile: bool
    gradient_checkpointing: bool
    class_weights: str | dict[str, float] | None
    label_smoothing: float
    early_stopping_patience: int | None
    head_init: str
    probe_C: float
    objective: str  # head: a classification head | generative: the causal LM writes the label's text
    verbalizer: dict[str, str] | None  # class name -> the text the generative objective writes
    max_tokens: int | None  # token-budget batches: padded tokens per batch (None: batch_size rows)
    base_precision: str  # the frozen base's dtype under LoRA: auto | fp32 | compute
    average_last: float | None  # keep the mean of the trainable weights over this last fraction of steps
    launch: LaunchParams
    lora: LoraParams
    qlora: QloraParams

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in FINE_TUNING_MODES:
            problems.append(f"mode: {self.mode!r} is not one of {list(FINE_TUNING_MODES)}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate: {self.learning_rate} must be > 0")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("epochs / max_steps: set epochs > 0 or max_steps > 0")
        if self.min_steps < 0:
            problems.append(f"min_steps: {self.min_steps} must be >= 0")
        for key in ("batch_size", "gradient_accumulation_steps", "eval_steps"):
            if getattr(self, key) < 1:
                problems.append(f"{key}: {getattr(self, key)} must be >= 1")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            problems.append("weight_decay / max_grad_norm: must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio: {self.warmup_ratio} must be in [0, 1)")
        if self.lr_scheduler not in ("linear", "cosine", "constant", "constant_with_warmup"):
            problems.append(f"lr_scheduler: {self.lr_scheduler!r} is not linear, cosine, constant(_with_warmup)")
        if self.metric_for_best not in ("accuracy", "f1_macro", "log_loss"):
            problems.append(f"metric_for_best: {self.metric_for_best!r} is not accuracy, f1_macro or log_loss")
        if self.precision not in PRECISIONS:
            problems.append(f"precision: {self.precision!r} is not one of {list(PRECISIONS)}")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            problems.append(f"class_weights: {self.class_weights!r} is not balanced, a mapping label: weight or null")
        if isinstance(self.class_weights, dict) and any(w <= 0 for w in self.class_weights.values()):
            problems.append("class_weights: every weight must be > 0")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing: {self.label_smoothing} must be in [0, 1)")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append(f"early_stopping_patience: {self.early_stopping_patience} must be >= 1 or null")
        if self.head_init not in HEAD_INITS:
            problems.append(f"head_init: {self.head_init!r} is not one of {list(HEAD_INITS)}")
        if self.probe_C <= 0:
            problems.append(f"probe_C: {self.probe_C} must be > 0")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective: {self.objective!r} is not one of {list(OBJECTIVES)}")
        if self.verbalizer is not None and not all(str(v).strip() for v in self.verbalizer.values()):
            problems.append("verbalizer: every class needs a non-empty text")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"max_tokens: {self.max_tokens} must be >= 1 or null")
        if self.base_precision not in BASE_PRECISIONS:
            problems.append(f"base_precision: {self.base_precision!r} is not one of {list(BASE_PRECISIONS)}")
        if self.average_last is not None:
            if not 0 < self.average_last <= 1:
                problems.append(f"average_last: {self.average_last} must be in (0, 1] or null")
            if self.launch.strategy not in ("single", "ddp"):
                # Sharded strategies hold a slice of each parameter per process: there is no whole weight to average.
                problems.append(f"average_last: needs launch.strategy single or ddp, not {self.launch.strategy!r}")
        _check(problems)


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    quantize: str | None
    swap_tta: bool
    max_new_tokens: int  # the generated mode's answer length limit (generative objective)
    max_tokens: int | None  # token-budget batches for the head's predictions (None: batch_size rows)

    def __post_init__(self) -> None:
        problems = [f"batch_size: {self.batch_size} must be >= 1"] if self.batch_size < 1 else []
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"max_tokens: {self.max_tokens} must be >= 1 or null")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens: {self.max_new_tokens} must be >= 1")
        if self.quantize not in (None, "8bit", "4bit"):
            problems.append(f"quantize: {self.quantize!r} is not 8bit, 4bit or null")
        _check(problems)


@dataclass(frozen=True)
class BaselineParams:
    """TF-IDF (word + char n-grams) + logistic regression, the classical reference of every run."""

    word_ngrams: tuple[int, ...]
    char_ngrams: tuple[int, ...]
    min_df: int
    max_features: int | None
    C: float
    class_weight: str | None
    max_iter: int

    def __post_init__(self) -> None:
        problems = []
        for key in ("word_ngrams", "char_ngrams"):
            value = getattr(self, key)
            if len(value) != 2 or not 1 <= value[0] <= value[1]:
                problems.append(f"{key}: {list(value)} must be [lowest, highest] n-gram size, 1 <= lowest <= highest")
        if self.min_df < 1:
            problems.append(f"min_df: {self.min_df} must be >= 1")
        if self.max_features is not None and self.max_features < 1:
            problems.append(f"max_features: {self.max_features} must be >= 1 or null")
        if self.C <= 0:
            problems.append(f"C: {self.C} must be > 0")
        if self.class_weight not in (None, "balanced"):
            problems.append(f"class_weight: {self.class_weight!r} is not null or 'balanced'")
        if self.max_iter < 1:
            problems.append(f"max_iter: {self.max_iter} must be >= 1")
        _check(problems)


@dataclass(frozen=True)
class EnsembleParams:
    llm_weight: float | str  # the LLM's share of the blend; the baseline gets the rest

    def __post_init__(self) -> None:
        ok = self.llm_weight == "fit" if isinstance(self.llm_weight, str) else 0 <= self.llm_weight <= 1
        _check([] if ok else [f"llm_weight: {self.llm_weight!r} must be in [0, 1] or 'fit'"])


@dataclass(frozen=True)
class SubmitParams:
    model: str  # whose test probabilities are submitted

    def __post_init__(self) -> None:
        ok = self.model in SUBMITTERS
        _check([] if ok else [f"model: {self.model!r} is not one of {list(SUBMITTERS)}"])


@dataclass(frozen=True)
class Params:
    dataset: str
    model: ModelParams
    fetch: FetchParams
    custom: CustomParams
    preprocess: PreprocessParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    baseline: BaselineParams
    ensemble: EnsembleParams
    submit: SubmitParams

    def __post_init__(self) -> None:
        _check(choice_problems(self.dataset, self.custom.train_path))


def model_problem(name: str) -> str | None:
    from llmcls.config import catalog

    return catalog.model_problem(name)


def choice_problems(dataset: Any, custom_train_path: Any) -> list[str]:
    """Problems with the top-level choice of dataset."""
    from llmcls.config.catalog import dataset_names

    problems = []
    if dataset not in dataset_names():
        problems.append(f"dataset: unknown {dataset!r}, choose from {dataset_names()}")
    if dataset == "custom" and not custom_train_path:
        problems.append("custom.train_path: required when dataset is 'custom'")
    return problems


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a (simple) type hint; bools are not ints, ints are floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_type_ok(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(v, typing.get_args(hint)[1]) for v in value.values())
    return isinstance(value, hint)


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from a mapping, appending every problem (with its key path) to ``problems``."""
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or 'params'}: expected a mapping, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    problems.extend(f"{prefix}{k}: unknown key" for k in data if k not in fields)
    kwargs: dict[str, Any] = {}
    for name in fields:
        key = f"{prefix}{name}"
        if name not in data:
            problems.append(f"{key}: missing")
            continue
        hint, value = hints[name], data[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{key}.", problems)
        elif _type_ok(value, hint):
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        else:
            problems.append(f"{key}: {value!r} is not of type {getattr(hint, '__name__', hint)}")
    if len(kwargs) < len(fields) or any(v is None and dataclasses.is_dataclass(hints[k]) for k, v in kwargs.items()):
        return None
    for name in ("class_quota", "class_weights", "verbalizer"):  # YAML may read labels such as 0 / 1 as ints
        if isinstance(kwargs.get(name), dict):
            kwargs[name] = {str(k): v for k, v in kwargs[name].items()}
    try:
        return cls(**kwargs)
    except SectionError as err:
        problems.extend(f"{prefix}{p}" for p in err.problems)
        return None


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise one LlmclsError that lists every problem."""
    problems: list[str] = []
    params = _build(Params, data, "", problems)
    if params is None and isinstance(data, dict):
        # A section failed, so Params.__post_init__ never ran: still report bad top-level choices.
        custom = data.get("custom")
        train_path = custom.get("train_path") if isinstance(custom, dict) else None
        problems.extend(p for p in choice_problems(data.get("dataset"), train_path) if p not in problems)
    fail_on(problems, f"{source} is invalid")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (the one place settings come from)."""
    path = Path(path)
    if not path.is_file():
        raise LlmclsError(f"{path}: params file not found")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise LlmclsError(f"{path}: not valid YAML: {err}") from err
    return parse_params(data, str(path))
