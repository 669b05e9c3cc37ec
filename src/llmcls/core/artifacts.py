"""What the stages hand each other: the label set, the names of the files in a split or model folder, and one
reader of a split folder (every stage after split reads its data through it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmcls.core.outputs import read_json

LABELS = "labels.json"  # the label set (a split folder's may add swap_permutation)
PROMPT = "prompt.json"  # how a raw row becomes the model's input (data/prompt.py: prompt_record)
META = "llmcls.json"  # a model folder's resolved params, base model record and precision
HEAD_WEIGHTS = "head.safetensors"  # the head of a fully fine-tuned model (not the architecture's score layer)
SCORED_SPLITS = ("val", "test")  # the splits evaluate, baseline and ensemble score

# What a label is (params `task`): one class per text, any set of classes per text, or a number.
SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label", "multi_label", "regression"
TASKS = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
# transformers' name of each (config.problem_type of a sequence classifier)
PROBLEM_TYPES = {
    SINGLE_LABEL: "single_label_classification",
    MULTI_LABEL: "multi_label_classification",
    REGRESSION: "regression",
}
SCORE = "score"  # the one output name of a regression model


@dataclass(frozen=True)
class LabelSet:
    """Class names in model order (label2id / id2label derive from it) and the task: a regression has the one
    output `score`, the training scores' range, and ``integer_scores`` when every one is a whole number (a grade)."""

    names: tuple[str, ...]
    task: str = SINGLE_LABEL
    integer_scores: bool = False
    score_range: tuple[float, float] | None = None

    @property
    def outputs(self) -> int:
        """The head's output width: one per class, one for a score."""
        return len(self.names)

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPES[self.task]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def to_json(self) -> dict[str, Any]:
        record = {"task": self.task, "labels": list(self.names), "label2id": self.label2id, "id2label": self.id2label}
        if self.task == REGRESSION:
            record |= {"integer_scores": self.integer_scores, "score_range": list(self.score_range or ())}
        return record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSet:
        # A folder written before tasks existed holds a single-label model.
        span = data.get("score_range")
        task = data.get("task", SINGLE_LABEL)
        return cls(tuple(data["labels"]), task, data.get("integer_scores", False), tuple(span) if span else None)

    @classmethod
    def read(cls, folder: str | Path) -> LabelSet:
        """The label set of a split, processed-data or model folder."""
        return cls.from_json(read_json(Path(folder) / LABELS))


@dataclass(frozen=True)
class SplitFolder:
    """data/split: train / val / test parquet files with labels.json and prompt.json beside them."""

    path: Path

    @property
    def labels(self) -> LabelSet:
        return LabelSet.read(self.path)

    @property
    def swap_permutation(self) -> list[int] | None:
        """For a pairwise dataset, the class each class becomes when the two responses trade places."""
        return read_json(self.path / LABELS).get("swap_permutation")

    @property
    def prompt(self) -> dict[str, Any]:
        return read_json(self.path / PROMPT)

    def frame(self, split: str) -> pd.DataFrame:
        return pd.read_parquet(self.path / f"{split}.parquet")

    def frames(self, splits: tuple[str, ...] = SCORED_SPLITS) -> dict[str, pd.DataFrame]:
        return {split: self.frame(split) for split in splits}


def targets(frame: pd.DataFrame, labels: LabelSet) -> np.ndarray:
    """What a labelled split's rows should be predicted as: class ids (single-label), a rows x labels 0/1
    matrix (multi-label) or the scores (regression)."""
    if labels.task == REGRESSION:
        return frame["label"].to_numpy(dtype=np.float64)
    if labels.task == MULTI_LABEL:
        hot = np.zeros((len(frame), len(labels.names)))
        for row, ids in enumerate(frame["label_id"]):
            hot[row, list(ids)] = 1.0
        return hot
    return frame["label_id"].to_numpy()


def is_labelled(frame: pd.DataFrame) -> bool:
    """Whether a split has rows and every row has a label (a Kaggle test split has none)."""
    return bool(len(frame)) and bool(frame["label"].notna().all())
