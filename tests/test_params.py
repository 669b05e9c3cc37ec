"""params.yaml loads into typed dataclasses; every problem in a bad file is reported in one error."""

import pytest
from conftest import ROOT, default_params

from llmcls.config.params import load_params, parse_params
from llmcls.core.errors import LlmclsError


def test_committed_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.dataset == "sst2"
    assert params.split.train_size == 4000
    assert params.split.val_fraction == 0.15
    assert params.train.mode == "lora"
    assert params.train.lora.target_modules  # a tuple, frozen like the rest
    with pytest.raises(AttributeError):
        params.train.seed = 1  # frozen


def _problems(**changes) -> str:
    with pytest.raises(LlmclsError) as err:
        parse_params(default_params(**changes))
    return str(err.value)


def test_all_problems_reported_together():
    message = _problems(**{"train.learning_rate": -1e-4, "split.val_fraction": 1.0, "train.mode": "qlorax"})
    assert "train.learning_rate: -0.0001 must be > 0" in message
    assert "split.val_fraction: 1.0 must be between 0 and 1" in message
    assert "train.mode: 'qlorax' is not one of" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dataset": "sst3"}, "dataset: unknown 'sst3'"),
        ({"model.name": "smollm3"}, "model.name: unknown model 'smollm3'"),
        ({"model.head": "attention"}, "model.head: 'attention' is not one of ['linear', 'mlp']"),
        ({"train.lora.bias": "some"}, "train.lora.bias: 'some' is not none, all or lora_only"),
        ({"train.qlora.bits": 3}, "train.qlora.bits: 3 is not 4 or 8"),
        ({"train.class_weights": "inverse"}, "train.class_weights: 'inverse' is not balanced"),
        ({"train.class_weights": {"pos": -1.0}}, "train.class_weights: every weight must be > 0"),
        ({"train.label_smoothing": 1.0}, "train.label_smoothing: 1.0 must be in [0, 1)"),
        ({"train.early_stopping_patience": 0}, "train.early_stopping_patience: 0 must be >= 1 or null"),
        ({"train.launch.strategy": "horovod"}, "train.launch.strategy: 'horovod' is not one of"),
        ({"evaluate.quantize": "2bit"}, "evaluate.quantize: '2bit' is not 8bit, 4bit or null"),
        ({"split.val_fraction": 0.0}, "split.val_fraction: 0.0 must be between 0 and 1"),
        ({"train.batch_size": 0}, "train.batch_size: 0 must be >= 1"),
        ({"train.batch_size": "16"}, "train.batch_size: '16' is not of type int"),
        ({"train.lora.r": 0}, "train.lora.r: 0 must be >= 1"),
        ({"train.lora.target_modules": "attention"}, "train.lora.target_modules: 'attention' must be a list"),
        ({"train.precision": "fp8"}, "train.precision: 'fp8' is not one of"),
        ({"preprocess.template": "no placeholder"}, "preprocess.template: must contain the {text} placeholder"),
        ({"preprocess.min_text_tokens": 4}, "preprocess.min_text_tokens: 4 must be between 8 and max_length"),
        ({"split.class_quota": -3}, "split.class_quota: -3 must be a positive int"),
        ({"train.learnign_rate": 0.1}, "train.learnign_rate: unknown key"),
        ({"dataset": "custom"}, "custom.train_path: required when dataset is 'custom'"),
        ({"baseline.C": 0}, "baseline.C: 0 must be > 0"),
        ({"baseline.word_ngrams": [2, 1]}, "baseline.word_ngrams: [2, 1] must be [lowest, highest]"),
        ({"baseline.class_weight": "auto"}, "baseline.class_weight: 'auto' is not null or 'balanced'"),
        ({"ensemble.llm_weight": 1.5}, "ensemble.llm_weight: 1.5 must be in [0, 1] or 'fit'"),
        ({"ensemble.llm_weight": "best"}, "ensemble.llm_weight: 'best' must be in [0, 1] or 'fit'"),
        ({"submit.model": "tfidf"}, "submit.model: 'tfidf' is not one of ['llm', 'baseline', 'ensemble']"),
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
