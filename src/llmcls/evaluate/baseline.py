"""The baseline stage's logic: TF-IDF (word + char n-grams) and a linear model on the LLM's own splits: logistic
regression (multi-label: one per label, one-vs-rest; its thresholds tuned on val as the LLM's are), or ridge
regression for scores (with cut-points tuned on val for integer ones).

Every leaderboard row gets a classical reference trained on exactly the rows the LLM saw, scored with the
same metrics, and written in the same files (so the ensemble and submit stages read either alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline

from llmcls.config.catalog import DatasetSpec
from llmcls.config.params import BaselineParams
from llmcls.core.artifacts import MULTI_LABEL, REGRESSION, SINGLE_LABEL, LabelSet, SplitFolder, is_labelled, targets
from llmcls.evaluate.decisions import fit_decision
from llmcls.evaluate.scoring import score_splits


def plain_texts(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """Each row's fields composed as the catalog says (``spec.text``), without the prompt template."""
    return [spec.text.format_map(row) for row in frame[list(spec.fields)].to_dict("records")]


def tfidf_classifier(params: BaselineParams, task: str = SINGLE_LABEL) -> Pipeline:
    """Word and character n-gram TF-IDF features side by side, then the task's linear model: multinomial
    logistic regression, one-vs-rest logistic regressions (multi-label), or ridge regression with alpha
    1 / (2C), C's L2 strength per row's loss (scores)."""

    def vectoriser(analyzer: str, ngrams: tuple[int, ...]) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=(ngrams[0], ngrams[1]),
            min_df=params.min_df,
            max_features=params.max_features,
            sublinear_tf=True,  # a word said ten times is not ten times the evidence
        )

    features = FeatureUnion(
        [("word", vectoriser("word", params.word_ngrams)), ("char", vectoriser("char_wb", params.char_ngrams))]
    )
    model: Any = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter)
    if task == MULTI_LABEL:
        model = OneVsRestClassifier(model)
    elif task == REGRESSION:
        model = Ridge(alpha=1 / (2 * params.C))
    return Pipeline([("features", features), ("model", model)])


def all_class_probabilities(pipeline: Pipeline, texts: list[str], n_classes: int) -> np.ndarray:
    """Probabilities for every class id, also the ones absent from the training rows (probability 0)."""
    probs = np.zeros((len(texts), n_classes))
    if texts:
        probs[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probs


def baseline_outputs(pipeline: Pipeline, texts: list[str], labels: LabelSet) -> np.ndarray:
    """The fitted pipeline's outputs as the LLM gives them: class or label probabilities, or a score column."""
    if labels.task == REGRESSION:
        return pipeline.predict(texts).reshape(-1, 1) if texts else np.zeros((0, 1))
    if labels.task == MULTI_LABEL:
        return pipeline.predict_proba(texts) if texts else np.zeros((0, len(labels.names)))
    return all_class_probabilities(pipeline, texts, len(labels.names))


def run_baseline(
    spec: DatasetSpec, params: BaselineParams, split_dir: Path, thresholds: str | float = "tuned"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Fit on the train split, score val and test: (summary metrics, full report, predictions). Multi-label
    thresholds (params train.thresholds) and integer-score cut-points are fitted on val, as for the LLM."""
    split = SplitFolder(split_dir)
    labels = split.labels
    train = split.frame("train")
    y = targets(train, labels)
    y = y.astype(int) if labels.task == MULTI_LABEL else y  # scikit-learn's label indicator matrix
    pipeline = tfidf_classifier(params, labels.task).fit(plain_texts(train, spec), y)
    frames = split.frames()
    outputs = {name: baseline_outputs(pipeline, plain_texts(f, spec), labels) for name, f in frames.items()}
    val = frames["val"]
    decision = fit_decision(labels, targets(val, labels), outputs["val"], thresholds) if is_labelled(val) else None
    summary, report, predictions = score_splits(frames, outputs, labels, decision)
    summary["features"] = int(len(pipeline.named_steps["features"].get_feature_names_out()))
    return summary, report, predictions
