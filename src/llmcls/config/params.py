"""params.yaml, loaded once into typed, frozen pydantic models.

Every setting lives in params.yaml; these models hold no defaults of their own, so a missing key is an error
rather than a silent second default. Unknown keys are errors too (a typo never passes silently), and every
problem in the file is reported at once, each with its key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llmcls.config.problems import describe
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


SOURCES = Literal["local", "package", "hub", "kaggle"]
TASK = Literal["single_label", "multi_label", "regression"]  # core.artifacts.TASKS
# What picks the kept checkpoint; which apply depends on the task (train checks: the task comes with the data).
METRICS_FOR_BEST = (
    "auto",
    "accuracy",
    "f1_macro",
    "f1_micro",
    "log_loss",
    "rmse",
    "mae",
    "pearson",
    "spearman",
    "r2",
)
# One accelerate config file per strategy in configs/accelerate/ (dvc.yaml builds the path).
LAUNCH_STRATEGIES = ("single", "ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp")
# YAML lists arrive as lists; the models keep them as tuples (frozen like the rest).
Names = Annotated[tuple[str, ...], Field(strict=False)]
Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1
Rate = Annotated[float, Field(ge=0, lt=1)]  # a dropout or a share: 0 included, 1 not
Positive = Annotated[int, Field(ge=1)]


def problems_found(problems: list[str]) -> None:
    """Raise the problems one section's own checks found; parse_params prefixes each with the section's path."""
    if problems:
        raise PydanticCustomError("llmcls", "{joined}", {"joined": "; ".join(problems), "problems": problems})


def label_keys(value: Any) -> Any:
    """YAML reads labels such as 0 / 1 as ints; labels are strings everywhere else."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def revision_problems(revision: str | None) -> list[str]:
    """A pin is a commit: a branch or tag name can point at other bytes tomorrow."""
    if revision is None or re.fullmatch(r"[0-9a-f]{40}", revision):
        return []
    return [f"revision: {revision!r} is not a commit sha (40 hex digits); branches and tags move"]


class Section(BaseModel):
    """A params.yaml section: strict types (a quoted "16" is not an int), frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def replace(self, **changes: Any):
        """A validated copy with ``changes`` applied (as `dvc exp run -S` would change params.yaml)."""
        return type(self).model_validate(self.model_dump() | changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples stay tuples), as llmcls.json records the resolved settings."""
        return self.model_dump()


class FetchParams(Section):
    sources: Annotated[tuple[SOURCES, ...], Field(strict=False, min_length=1)]
    revision: str | None  # a hub dataset's commit, over the catalog's pin

    @model_validator(mode="after")
    def _check(self) -> FetchParams:
        problems_found(revision_problems(self.revision))
        return self


class ModelParams(Section):
    """The base model and the classification head put on it."""

    name: str
    head: Literal["linear", "mlp"]
    head_dropout: Rate
    trust_remote_code: bool
    revision: str | None  # a hub model's commit, over the catalog's pin

    @model_validator(mode="after")
    def _check(self) -> ModelParams:
        from llmcls.config.catalog import model_problem

        problem = model_problem(self.name)
        problems_found(([f"name: {problem}"] if problem else []) + revision_problems(self.revision))
        return self


class CustomParams(Section):
    """The ``custom`` dataset: any tabular file with configurable columns."""

    train_path: str | None
    test_path: str | None
    text_columns: Annotated[tuple[str, ...], Field(strict=False, min_length=1)]
    label_column: str
    id_column: str | None
    sep: str | None  # column separator; None: by extension (CSV ',', TSV / TXT tab)
    header: bool  # False: the first row is data; `names` names the columns
    names: Names | None
    encoding: str
    label_names: str | dict[str, str] | None  # raw label -> class name, or a file with one name per line
    label_pattern: str | None  # a regex whose one group captures the label from the raw label cell
    label_columns: Annotated[tuple[str, ...], Field(strict=False, min_length=1)] | None  # 0/1 columns, one a label
    label_separator: str | None  # multi-label: between the labels of one cell; None: any of , ; |

    _labels = field_validator("label_names", mode="before")(label_keys)

    @model_validator(mode="after")
    def _check(self) -> CustomParams:
        problems = []
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
        problems_found(problems)
        return self


def label_pattern_problems(pattern: str | None) -> list[str]:
    """A label pattern must compile and capture exactly one group (the label)."""
    if pattern is None:
        return []
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        return [f"label_pattern: {pattern!r} is not a regular expression: {err}"]
    return [] if groups == 1 else [f"label_pattern: {pattern!r} must have exactly one (group): the label"]


class PreprocessParams(Section):
    prompt_wrapping: bool
    template: str
    max_length: Annotated[int, Field(ge=16)]
    min_text_tokens: int  # a template longer than max_length - this still gets this many text tokens
    class_labels_max_tokens: Annotated[int, Field(ge=0)] | None  # {class_labels} lists the names only while
    # they take at most this many tokens; null: always
    truncation_side: Literal["right", "left"]
    bad_rows: Literal["error", "skip"]  # error: stop at the first bad row (all listed) | skip: drop and report

    @model_validator(mode="after")
    def _check(self) -> PreprocessParams:
        problems = []
        if self.prompt_wrapping and "{text}" not in self.template:
            problems.append("template: must contain the {text} placeholder")
        if not 8 <= self.min_text_tokens <= self.max_length:
            problems.append(f"min_text_tokens: {self.min_text_tokens} must be between 8 and max_length")
        problems_found(problems)
        return self


class SplitParams(Section):
    val_fraction: Fraction
    test_fraction: Fraction
    train_size: Annotated[int, Field(ge=2)] | None  # rows trained on; null: all
    class_quota: Positive | dict[str, Positive] | None
    seed: int

    _labels = field_validator("class_quota", mode="before")(label_keys)


class LoraParams(Section):
    r: Positive
    alpha: Positive
    dropout: Rate
    target_modules: Names | Literal["all-linear"]
    bias: Literal["none", "all", "lora_only"]
    use_dora: bool
    use_rslora: bool


class QloraParams(Section):
    """The quantised base of ``train.mode: qlora`` (bitsandbytes, CUDA only)."""

    bits: Literal[4, 8]
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    compute_dtype: Literal["bf16", "fp16", "fp32"]


class LaunchParams(Section):
    """How dvc.yaml's `accelerate launch` runs the train stage."""

    num_processes: Positive  # on each machine
    num_machines: Positive  # the world size and so the global batch depend on it: an experiment setting
    strategy: Literal["single", "ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp"]

    @model_validator(mode="after")
    def _check(self) -> LaunchParams:
        problems = []
        if self.strategy == "single" and self.num_processes != 1:
            problems.append(f"num_processes: {self.num_processes} processes need strategy ddp, deepspeed-* or fsdp")
        if self.strategy == "single" and self.num_machines != 1:
            problems.append(f"num_machines: {self.num_machines} machines need strategy ddp, deepspeed-* or fsdp")
        problems_found(problems)
        return self


class TrainParams(Section):
    mode: Literal["lora", "qlora", "full"]
    seed: int
    epochs: int | float  # a whole number stays one: llmcls.json records it as written
    max_steps: int
    min_steps: Annotated[int, Field(ge=0)]
    learning_rate: Annotated[float, Field(gt=0)]
    batch_size: Positive
    gradient_accumulation_steps: Positive
    weight_decay: Annotated[float, Field(ge=0)]
    warmup_ratio: Rate
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"]
    max_grad_norm: Annotated[float, Field(ge=0)]
    eval_steps: Positive | None  # null: `validations` evenly spaced over the run
    validations: Positive
    metric_for_best: Literal[METRICS_FOR_BEST]  # auto: the task's main metric
    group_by_length: bool
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    torch_compile: bool
    gradient_checkpointing: bool
    class_weights: Literal["balanced"] | dict[str, Annotated[float, Field(gt=0)]] | None
    label_smoothing: Rate
    early_stopping_patience: Positive | None
    head_init: Literal["random", "linear_probe"]
    probe_C: Annotated[float, Field(gt=0)]
    objective: Literal["head", "generative"]  # head: a classification head | generative: the LM writes the label
    verbalizer: dict[str, str] | None  # class name -> the text the generative objective writes
    max_tokens: Positive | None  # token-budget batches: padded tokens per batch (None: batch_size rows)
    # The frozen base under LoRA: compute = in precision's bf16 / fp16 (half the memory; trainable weights stay
    # fp32); auto = compute on CUDA, fp32 on CPU (where compute gained too little to be worth a second numerics).
    base_precision: Literal["auto", "fp32", "compute"]
    average_last: Annotated[float, Field(gt=0, le=1)] | None  # mean of the trainable weights over this tail
    calibration: Literal["temperature", "none"]  # temperature scaling fitted on val, stored with the model
    thresholds: Literal["tuned"] | Annotated[float, Field(gt=0, lt=1)]  # multi-label decisions: per label on val
    launch: LaunchParams
    lora: LoraParams
    qlora: QloraParams

    _labels = field_validator("class_weights", "verbalizer", mode="before")(label_keys)

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        problems = []
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("epochs / max_steps: set epochs > 0 or max_steps > 0")
        if self.verbalizer is not None and not all(v.strip() for v in self.verbalizer.values()):
            problems.append("verbalizer: every class needs a non-empty text")
        if self.average_last is not None and self.launch.strategy not in ("single", "ddp"):
            # Sharded strategies hold a slice of each parameter per process: there is no whole weight to average.
            problems.append(f"average_last: needs launch.strategy single or ddp, not {self.launch.strategy!r}")
        problems_found(problems)
        return self


class EvaluateParams(Section):
    batch_size: Positive
    quantize: Literal["8bit", "4bit"] | None
    swap_tta: bool
    max_new_tokens: Positive  # the generated mode's answer length limit (generative objective)
    max_tokens: Positive | None  # token-budget batches for the head's predictions (None: batch_size rows)


class BaselineParams(Section):
    """TF-IDF (word + char n-grams) + logistic regression, the classical reference of every run."""

    word_ngrams: Annotated[tuple[int, int], Field(strict=False)]
    char_ngrams: Annotated[tuple[int, int], Field(strict=False)]
    min_df: Positive
    max_features: Positive | None
    C: Annotated[float, Field(gt=0)]
    class_weight: Literal["balanced"] | None
    max_iter: Positive

    @model_validator(mode="after")
    def _check(self) -> BaselineParams:
        problems_found(
            [
                f"{key}: {list(value)} must be [lowest, highest] n-gram size, 1 <= lowest <= highest"
                for key, value in (("word_ngrams", self.word_ngrams), ("char_ngrams", self.char_ngrams))
                if not 1 <= value[0] <= value[1]
            ]
        )
        return self


class EnsembleParams(Section):
    llm_weight: float | str  # the LLM's share of the blend (the baseline gets the rest), or "fit"

    @model_validator(mode="after")
    def _check(self) -> EnsembleParams:
        ok = self.llm_weight == "fit" if isinstance(self.llm_weight, str) else 0 <= self.llm_weight <= 1
        problems_found([] if ok else [f"llm_weight: {self.llm_weight!r} must be in [0, 1] or 'fit'"])
        return self


class SubmitParams(Section):
    model: Literal["llm", "baseline", "ensemble"]  # whose test probabilities are submitted


class Params(Section):
    dataset: str
    task: TASK | None  # None: the dataset's own (catalog.yaml; custom data: single_label)
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


def choice_problems(data: dict[str, Any]) -> list[str]:
    """Problems with the top-level choice of dataset (checked on the raw mapping, so they are reported even when
    a section fails)."""
    from llmcls.config.catalog import dataset_names

    dataset = data.get("dataset")
    custom = data.get("custom")
    problems = []
    if dataset not in dataset_names():
        problems.append(f"dataset: unknown {dataset!r}, choose from {dataset_names()}")
    if dataset == "custom" and not (custom.get("train_path") if isinstance(custom, dict) else None):
        problems.append("custom.train_path: required when dataset is 'custom'")
    return problems


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise one LlmclsError that lists every problem."""
    if not isinstance(data, dict):
        raise LlmclsError(f"{source} is invalid:\n  - params: expected a mapping, got {data!r}")
    problems = choice_problems(data)
    try:
        params = Params.model_validate(data)
    except ValidationError as err:
        problems += [p for p in describe(err, Params) if p not in problems]
        params = None
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
