"""The generative objective (train.objective: generative) on the tiny random Llama: the loss sits on the label
tokens only, scored probabilities, generated answers and their in / not-in-label-set counts, and the whole
route through train, evaluate, predict and export."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_label_scoring import by_hand
from test_training import train
from transformers import AutoModelForCausalLM

from llmcls.core.artifacts import LabelSet
from llmcls.evaluate.classifier import evaluate_classifier
from llmcls.evaluate.generation import answer_class, generate_answers, generated_metrics
from llmcls.evaluate.label_scoring import scored_probabilities
from llmcls.train.generative import IGNORE, label_texts, lm_rows

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_prompt_tokens_carry_no_loss(lm):
    frame = pd.DataFrame({"input_ids": [[1, 5, 9, 13], [1, 7]], "label_id": [1, 0]})
    targets = [[11], [20, 21]]
    rows = lm_rows(frame, targets, eos_id=2)
    assert rows["input_ids"][0] == [1, 5, 9, 13, 20, 21, 2] and rows["labels"][0] == [IGNORE] * 4 + [20, 21, 2]
    assert rows["labels"][1] == [IGNORE, IGNORE, 11, 2] and rows["length"] == [7, 4]
    # The model's own loss over these labels is the mean negative log-likelihood of the answer tokens alone.
    ids, labels = torch.tensor([rows["input_ids"][0]]), torch.tensor([rows["labels"][0]])
    with torch.no_grad():
        loss = lm(input_ids=ids, labels=labels).loss.item()
    np.testing.assert_allclose(loss, -by_hand(lm, [1, 5, 9, 13], [20, 21, 2]) / 3, rtol=1e-5)


def test_scored_probabilities_sum_to_one_and_match_the_hand_computation(lm):
    prompts, targets = [[1, 5, 9], [1, 7, 3, 4, 6]], [[11], [20, 21], [30]]
    probs = scored_probabilities(lm, prompts, targets, pad_id=0, batch_size=2, precision="fp32")
    expected = np.exp([[by_hand(lm, p, t) for t in targets] for p in prompts])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-9)
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), atol=1e-4)


def test_generated_answers_and_their_counts(lm, tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    prompts = [[1, 5, 9, 13, 2, 40], [1, 7], [1, 8, 9]]
    together = generate_answers(lm, prompts, tokenizer, max_new_tokens=4, batch_size=3, precision="fp32")
    alone = [generate_answers(lm, [p], tokenizer, 4, 1, "fp32")[0] for p in prompts]
    assert together == alone  # left padding in a batch changes nothing
    assert answer_class(" Positive\nbecause", ["negative", "positive"]) == 1
    assert answer_class("positively", ["negative", "positive"]) == -1
    counts = generated_metrics([" positive", "negative", "maybe", " positive"], ["negative", "positive"], [1, 0, 0, 0])
    assert counts["in_label_set"] == 3 and counts["not_in_label_set"] == 1 and counts["in_label_set_share"] == 0.75
    assert counts["accuracy"] == 0.5  # "maybe" counts as wrong
    unlabelled = generated_metrics(["x"], ["negative", "positive"], [-1])
    assert unlabelled == {"in_label_set": 0, "not_in_label_set": 1, "in_label_set_share": 0.0}


def test_verbalizer():
    labels, prompt = LabelSet(("neg", "pos")), {"label_texts": ["neg", "pos"]}
    assert label_texts(labels, prompt, None) == ["neg", "pos"]
    assert label_texts(labels, prompt, {"pos": "great"}) == ["neg", "great"]
    with pytest.raises(Exception, match="not classes of this dataset"):
        label_texts(labels, prompt, {"neutral": "meh"})
    with pytest.raises(Exception, match="written alike"):
        label_texts(labels, prompt, {"pos": "neg"})


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_generative_train_evaluate_predict_export(tmp_path, tiny_model_dir, tiny_base_dir, mode):
    settings = {"train.objective": "generative", "train.mode": mode, "train.verbalizer": {"positive": "good"}}
    summary, out, split_dir = train(tmp_path, tiny_model_dir, tiny_base_dir, mode, **settings)
    model_dir = out / "model"
    meta = json.loads((model_dir / "llmcls.json").read_text())
    assert meta["objective"] == "generative" and meta["label_texts"] == ["negative", "good"]
    assert summary["best_step"] in (3, 6) and "best_val_accuracy" in summary
    live = json.loads((out / "live" / "metrics.json").read_text())
    assert {"accuracy", "log_loss", "loss"} <= set(live["eval"])  # scored validation beside the label-token loss

    result, report, predictions = evaluate_classifier(model_dir, tiny_base_dir, split_dir, 4, max_new_tokens=3)
    test = result["test"]
    assert 0 <= test["accuracy"] <= 1 and test["n"] == 12
    generated = test["generated"]
    assert generated["in_label_set"] + generated["not_in_label_set"] == 12
    assert len(predictions["test"]["generated"]) == 12
    probs = predictions["test"][["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)

    from llmcls.serve import load_classifier
    from llmcls.serve.export import export_model

    texts = pd.read_parquet(split_dir / "test.parquet")["text"].tolist()
    api = load_classifier(model_dir, base=tiny_base_dir)
    np.testing.assert_allclose(api.predict_proba(texts), probs, atol=1e-6)
    export_model(model_dir, tiny_base_dir, tmp_path / "exported")
    assert not (tmp_path / "exported" / "modeling_llmcls.py").exists()  # a plain causal LM
    AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    np.testing.assert_allclose(load_classifier(tmp_path / "exported").predict_proba(texts), probs, atol=1e-6)


def test_the_trainers_label_position_loss_equals_the_models_own(lm, tmp_path):
    """ScoredTrainer projects only the positions that predict a label token onto the vocabulary; its loss is the
    model's own full-logit loss over the same labels."""
    from transformers import TrainingArguments

    from llmcls.train.generative import ScoredTrainer

    frame = pd.DataFrame({"input_ids": [[1, 5, 9, 13, 8], [1, 7]], "label_id": [1, 0]})
    rows = lm_rows(frame, [[11], [20, 21]], eos_id=2)
    width = max(rows["length"])
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows["input_ids"]])
    labels = torch.tensor([r + [IGNORE] * (width - len(r)) for r in rows["labels"]])
    mask = (torch.arange(width)[None, :] < torch.tensor(rows["length"])[:, None]).long()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = ScoredTrainer(model=lm, args=args, scoring={})
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        ours = trainer.compute_loss(lm, batch)
        own = lm(**batch).loss
    torch.testing.assert_close(ours, own)
    assert "labels" in batch  # the caller's batch is left as it was
