"""What the stages hand each other: the label set, the names of the files in a split or model folder, and one
reader of a split folder (every stage after split reads its data through it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llmcls.core.outputs import read_json

LABELS = "labels.json"  # the label set (a split folder's may add swap_permutation)
PROMPT = "prompt.json"  # how a raw row becomes the model's input (data/prompt.py: prompt_record)
META = "llmcls.json"  # a model folder's resolved params, base model record and precision
HEAD_WEIGHTS = "head.safetensors"  # the head of a fully fine-tuned model (not the architecture's score layer)
SCORED_SPLITS = ("val", "test")  # the splits evaluate, baseline and ensemble score


@dataclass(frozen=True)
class LabelSet:
    """Class names in model order; label2id / id2label derive from it."""

    names: tuple[str, ...]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def to_json(self) -> dict[str, Any]:
        return {"labels": list(self.names), "label2id": self.label2id, "id2label": self.id2label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSet:
        return cls(tuple(data["labels"]))

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
