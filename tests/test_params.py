"""params.yaml loads into typed, frozen pydantic models; every problem in a bad file is reported in one error."""

import pytest
from conftest import ROOT, default_params
from pydantic import ValidationError

from llmcls.config.params import load_params, parse_params
from llmcls.core.errors import LlmclsError


def test_committed_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.dataset == "sst2"
    assert params.split.train_size == 4000
    assert params.split.val_fraction == 0.15
    assert params.train.mode == "lora"
    assert params.train.lora.target_modules  # a tuple, frozen like the rest
    with pytest.raises(ValidationError, match="frozen"):
        params.train.seed = 1


def _problems(**changes) -> str:
    with pytest.raises(LlmclsError) as err:
        parse_params(default_params(**changes))
    return str(err.value)


def test_all_problems_reported_together():
    message = _problems(**{"train.learning_rate": -1e-4, "split.val_fraction": 1.0, "train.mode": "qlorax"})
    assert "train.learning_rate: -0.0001 must be > 0" in message
    assert "split.val_fraction: 1.0 must be < 1" in message
    assert "train.mode: 'qlorax' is not one of 'lora', 'qlora' or 'full'" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dataset": "sst3"}, "dataset: unknown 'sst3'"),
        ({"model.name": "smollm3"}, "model.name: unknown model 'smollm3'"),
        ({"model.head": "attention"}, "model.head: 'attention' is not one of 'linear' or 'mlp'"),
        ({"train.lora.bias": "some"}, "train.lora.bias: 'some' is not one of 'none', 'all' or 'lora_only'"),
        ({"train.qlora.bits": 3}, "train.qlora.bits: 3 is not one of 4 or 8"),
        ({"train.class_weights": "inverse"}, "train.class_weights: 'inverse' is not 'balanced' or a mapping or null"),
        ({"train.class_weights": {"pos": -1.0}}, "train.class_weights.pos: -1.0 must be > 0"),
        ({"train.label_smoothing": 1.0}, "train.label_smoothing: 1.0 must be < 1"),
        ({"train.early_stopping_patience": 0}, "train.early_stopping_patience: 0 must be >= 1"),
        ({"train.launch.strategy": "horovod"}, "train.launch.strategy: 'horovod' is not one of"),
        ({"evaluate.quantize": "2bit"}, "evaluate.quantize: '2bit' is not one of '8bit' or '4bit'"),
        ({"split.val_fraction": 0.0}, "split.val_fraction: 0.0 must be > 0"),
        ({"train.batch_size": 0}, "train.batch_size: 0 must be >= 1"),
        ({"train.batch_size": "16"}, "train.batch_size: '16' is not of type int"),
        ({"train.lora.r": 0}, "train.lora.r: 0 must be >= 1"),
        ({"train.calibration": "platt"}, "train.calibration: 'platt' is not one of 'temperature' or 'none'"),
        (
            {"train.lora.target_modules": "attention"},
            "train.lora.target_modules: 'attention' is not a list or 'all-linear'",
        ),
        ({"train.precision": "fp8"}, "train.precision: 'fp8' is not one of"),
        ({"preprocess.template": "no placeholder"}, "preprocess.template: must contain the {text} placeholder"),
        ({"preprocess.min_text_tokens": 4}, "preprocess.min_text_tokens: 4 must be between 8 and max_length"),
        ({"split.class_quota": -3}, "split.class_quota: -3 must be >= 1"),
        ({"train.learnign_rate": 0.1}, "train.learnign_rate: unknown key (did you mean 'learning_rate'?)"),
        ({"dataset": "custom"}, "custom.train_path: required when dataset is 'custom'"),
        ({"baseline.C": 0}, "baseline.C: 0 must be > 0"),
        ({"baseline.word_ngrams": [2, 1]}, "baseline.word_ngrams: [2, 1] must be [lowest, highest]"),
        ({"baseline.class_weight": "auto"}, "baseline.class_weight: 'auto' is not one of 'balanced'"),
        ({"ensemble.llm_weight": 1.5}, "ensemble.llm_weight: 1.5 must be in [0, 1] or 'fit'"),
        ({"ensemble.llm_weight": "best"}, "ensemble.llm_weight: 'best' must be in [0, 1] or 'fit'"),
        ({"submit.model": "tfidf"}, "submit.model: 'tfidf' is not one of 'llm', 'baseline' or 'ensemble'"),
        ({"fetch.revision": "main"}, "fetch.revision: 'main' is not a commit sha (40 hex digits)"),
        ({"model.revision": "v1.0"}, "model.revision: 'v1.0' is not a commit sha (40 hex digits)"),
    ],
)
def test_bad_value_names_its_key(changes, expected):
    assert expected in _problems(**changes)


def test_missing_key_and_bad_section_with_bad_dataset():
    data = default_params()
    del data["train"]["seed"]
    data["dataset"] = "nope"
    with pytest.raises(LlmclsError) as err:
        parse_params(data)
    assert "train.seed: missing" in str(err.value)
    assert "dataset: unknown 'nope'" in str(err.value)  # reported although the train section failed


def test_params_file_errors(tmp_path):
    with pytest.raises(LlmclsError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(LlmclsError, match="not valid YAML"):
        load_params(bad)


def test_hub_id_and_local_folder_are_models(tmp_path):
    data = default_params()
    data["model"]["name"] = "Qwen/Qwen3-1.7B"
    assert parse_params(data).model.name == "Qwen/Qwen3-1.7B"
    data["model"]["name"] = str(tmp_path)
    assert parse_params(data).model.name == str(tmp_path)


def test_exponent_floats_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S train.learning_rate=5e-5` writes `5e-05`; plain PyYAML would read a string."""
    from conftest import write_params

    path = write_params(tmp_path)
    path.write_text(path.read_text().replace("learning_rate: 0.0005", "learning_rate: 5e-05"))
    assert "learning_rate: 5e-05" in path.read_text()
    assert load_params(path).train.learning_rate == 5e-05


def test_several_bad_keys_at_once_each_with_its_path():
    """A wrong type, an unknown key, a bad enum value, a missing key and a section check, in one message."""
    data = default_params(
        **{
            "train.batch_size": "16",
            "evaluate.batch_sise": 8,
            "train.precision": "fp8",
            "train.launch.num_processes": 2,
            "preprocess.truncation_side": "middle",
        }
    )
    del data["split"]["seed"]
    with pytest.raises(LlmclsError) as err:
        parse_params(data)
    lines = str(err.value).splitlines()
    assert lines[0] == "params.yaml is invalid:"
    assert set(lines[1:]) == {
        "  - train.batch_size: '16' is not of type int",
        "  - evaluate.batch_sise: unknown key (did you mean 'batch_size'?)",
        "  - train.precision: 'fp8' is not one of 'auto', 'fp32', 'bf16' or 'fp16'",
        "  - train.launch.num_processes: 2 processes need strategy ddp, deepspeed-* or fsdp",
        "  - preprocess.truncation_side: 'middle' is not one of 'right' or 'left'",
        "  - split.seed: missing",
    }


def test_a_section_that_is_not_a_mapping_and_a_bool_that_is_not_an_int():
    message = _problems(**{"evaluate": [1, 2], "train.seed": True})
    assert "evaluate: [1, 2] is not of type mapping" in message
    assert "train.seed: True is not of type int" in message


def test_replace_validates():
    params = parse_params(default_params())
    assert params.train.replace(batch_size=4).batch_size == 4
    with pytest.raises(ValidationError):
        params.train.replace(batch_size=0)
