"""The baseline stage's logic: TF-IDF (word + char n-grams) and logistic regression on the LLM's own splits.

Every leaderboard row gets a classical reference trained on exactly the rows the LLM saw, scored with the
same metrics, and written in the same files (so the ensemble and submit stages read either alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from llmcls.config.catalog import DatasetSpec
from llmcls.config.params import BaselineParams
from llmcls.core.artifacts import SplitFolder
from llmcls.evaluate.scoring import score_splits


def plain_texts(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """Each row's fields composed as the catalog says (``spec.text``), without the prompt template."""
    return [spec.text.format_map(row) for row in frame[list(spec.fields)].to_dict("records")]


def tfidf_classifier(params: BaselineParams) -> Pipeline:
    """Word and character n-gram TF-IDF features side by side, then a multinomial logistic regression."""

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
    model = LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter)
    return Pipeline([("features", features), ("model", model)])


def all_class_probabilities(pipeline: Pipeline, texts: list[str], n_classes: int) -> np.ndarray:
    """Probabilities for every class id, also the ones absent from the training rows (probability 0)."""
    probs = np.zeros((len(texts), n_classes))
    if texts:
        probs[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probs


def run_baseline(
    spec: DatasetSpec, params: BaselineParams, split_dir: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Fit on the train split, score val and test: (summary metrics, full report, predictions)."""
    split = SplitFolder(split_dir)
    labels = split.labels
    train = split.frame("train")
    pipeline = tfidf_classifier(params).fit(plain_texts(train, spec), train["label_id"].to_numpy())
    frames = split.frames()
    probs = {
        name: all_class_probabilities(pipeline, plain_texts(f, spec), len(labels.names)) for name, f in frames.items()
    }
    summary, report, predictions = score_splits(frames, probs, labels)
    summary["features"] = int(len(pipeline.named_steps["features"].get_feature_names_out()))
    return summary, report, predictions
