"""The TF-IDF baseline, the probability ensemble and A/B-swap test-time augmentation, on tiny data."""

import numpy as np
import pandas as pd
import pytest
from conftest import default_params, sentiment_frame

from llmcls.config.catalog import dataset_spec
from llmcls.config.params import parse_params
from llmcls.core.artifacts import LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import write_json
from llmcls.data.prompt import swapped_fields
from llmcls.data.rows import swap_permutation
from llmcls.evaluate.baseline import all_class_probabilities, plain_texts, run_baseline, tfidf_classifier
from llmcls.evaluate.classifier import swap_back
from llmcls.evaluate.ensemble import fit_weight, run_ensemble
from llmcls.evaluate.scoring import PROB_PREFIX, prediction_table

LABELS = LabelSet(("negative", "positive"))


def split_dir(tmp_path, n_per_class=20):
    """A split folder as the split stage writes it (only the columns the classical stages read)."""
    frame = sentiment_frame(n_per_class).rename(columns={"sentence": "text"})
    frame["label"] = frame["label"].map({0: "negative", 1: "positive"})
    frame["label_id"] = frame["label"].map(LABELS.label2id)
    frame["id"] = [f"r{i}" for i in range(len(frame))]
    out = tmp_path / "split"
    out.mkdir()
    # Row pairs i (one per class) go to train, val, test by i % 7: 5/7, 1/7, 1/7, and every phrase of
    # sentiment_frame (i % 6) reaches train.
    slot = (np.arange(len(frame)) // 2) % 7
    for split, rows in (("train", slot < 5), ("val", slot == 5), ("test", slot == 6)):
        frame[rows].reset_index(drop=True).to_parquet(out / f"{split}.parquet")
    write_json(out / "labels.json", LABELS.to_json())
    return out


def test_baseline_learns_a_separable_task(tmp_path):
    params = parse_params(default_params()).baseline
    summary, report, tables = run_baseline(dataset_spec("sst2"), params, split_dir(tmp_path))
    assert summary["test"]["accuracy"] == 1.0 and summary["val"]["accuracy"] == 1.0
    assert summary["features"] > 100
    assert report["test"]["confusion_matrix"] == [[len(tables["test"]) // 2, 0], [0, len(tables["test"]) // 2]]
    assert list(tables["test"].columns) == ["id", "label", "predicted", "prob_negative", "prob_positive"]


def test_baseline_gives_zero_to_classes_it_never_saw():
    params = parse_params(default_params()).baseline
    pipeline = tfidf_classifier(params).fit(["good film", "bad film", "great film", "awful film"], [0, 2, 0, 2])
    probs = all_class_probabilities(pipeline, ["good", "awful"], 3)
    assert probs.shape == (2, 3) and (probs[:, 1] == 0).all()
    assert np.allclose(probs.sum(axis=1), 1)


def test_plain_texts_compose_the_fields_without_the_prompt():
    spec = dataset_spec("arena")
    frame = pd.DataFrame({"prompt": ["hi"], "response_a": ["A says"], "response_b": ["B says"]})
    assert plain_texts(frame, spec) == ["User prompt: hi\n\nModel A:\nA says\n\n--------\n\nModel B:\nB says"]


def test_fit_weight_on_fixed_numbers():
    y = np.array([0, 1, 0, 1])
    good = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.2, 0.8]])
    coin = np.full((4, 2), 0.5)
    assert fit_weight(good, coin, y) == 1.0  # the informative model takes all the weight
    assert fit_weight(coin, good, y) == 0.0
    # Two models wrong on different rows: the blend beats either alone.
    a = np.array([[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9]])
    b = np.array([[0.4, 0.6], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    assert 0 < fit_weight(a, b, y) < 1


def write_predictions(folder, frames, probs_by_split):
    folder.mkdir()
    for split, frame in frames.items():
        prediction_table(frame, probs_by_split[split], LABELS).to_csv(folder / f"{split}.csv", index=False)


def test_ensemble_blends_by_id_with_a_fixed_or_fitted_weight(tmp_path):
    splits = split_dir(tmp_path, 14)
    frames = {s: pd.read_parquet(splits / f"{s}.parquet") for s in ("val", "test")}
    y = {s: f["label_id"].to_numpy() for s, f in frames.items()}
    llm = {s: np.eye(2)[y[s]] * 0.8 + 0.1 for s in frames}  # right, 0.9 confident
    base = {s: np.full((len(frames[s]), 2), 0.5) for s in frames}
    write_predictions(tmp_path / "llm", frames, llm)
    # Rows in another order: the ensemble matches them by id.
    write_predictions(
        tmp_path / "base", {s: f.iloc[::-1] for s, f in frames.items()}, {s: b[::-1] for s, b in base.items()}
    )
    summary, _, tables = run_ensemble(tmp_path / "llm", tmp_path / "base", splits, 0.5)
    assert summary["llm_weight"] == 0.5 and not summary["fitted"]
    assert np.allclose(tables["test"][f"{PROB_PREFIX}positive"], 0.5 * llm["test"][:, 1] + 0.25)
    fitted, _, _ = run_ensemble(tmp_path / "llm", tmp_path / "base", splits, "fit")
    assert fitted["llm_weight"] == 1.0 and fitted["fitted"]


def test_ensemble_names_a_predictions_file_that_does_not_match(tmp_path):
    splits = split_dir(tmp_path, 14)
    frames = {s: pd.read_parquet(splits / f"{s}.parquet") for s in ("val", "test")}
    probs = {s: np.full((len(f), 2), 0.5) for s, f in frames.items()}
    write_predictions(tmp_path / "llm", frames, probs)
    write_predictions(
        tmp_path / "base", {s: f.iloc[1:] for s, f in frames.items()}, {s: p[1:] for s, p in probs.items()}
    )
    with pytest.raises(LlmclsError, match=r"base/val.csv: does not match the split: missing ids"):
        run_ensemble(tmp_path / "llm", tmp_path / "base", splits, 0.8)


def test_swap_tta_maps_a_and_b_back():
    spec = dataset_spec("arena")
    labels = LabelSet(("winner_model_a", "winner_model_b", "winner_tie"))
    permutation = swap_permutation(spec, labels)
    assert permutation == [1, 0, 2]
    assert swap_permutation(dataset_spec("sst2"), LABELS) is None
    # On the swapped input the model says "A wins" 0.7: in the original order that is B winning.
    assert swap_back(np.array([[0.7, 0.2, 0.1]]), permutation).tolist() == [[0.2, 0.7, 0.1]]
    frame = pd.DataFrame({"prompt": ["p"], "response_a": ["first"], "response_b": ["second"]})
    traded = swapped_fields(frame, spec.swap)
    assert traded.loc[0, "response_a"] == "second" and traded.loc[0, "response_b"] == "first"
