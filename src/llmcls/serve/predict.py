"""Classify new texts with a trained or exported model: `llmcls predict` and its Python API.

A model folder carries everything training used to read a row: prompt.json (the composed template, its
truncation, which columns hold the text and the label), labels.json and llmcls.json (precision, batch size,
pad token). New rows are encoded exactly as the test split was, so the probabilities equal evaluate's.

    from llmcls.serve import load_classifier
    classifier = load_classifier("models/classifier")
    classifier.predict_proba(["a gripping, funny film", "two hours I will not get back"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmcls.config.catalog import DatasetSpec
from llmcls.core.artifacts import LABELS, META, MULTI_LABEL, PROMPT, REGRESSION, LabelSet
from llmcls.core.devices import enable_fast_matmul, inference_precision, resolve_precision
from llmcls.core.errors import LlmclsError, fail_on
from llmcls.core.outputs import read_json, staged_file
from llmcls.core.progress import Progress
from llmcls.data.prompt import encode_table, reader_spec
from llmcls.data.rows import BadRow, canonical_rows, swap_permutation
from llmcls.data.tables import missing_columns, read_table
from llmcls.evaluate.calibration import apply_temperature
from llmcls.evaluate.classifier import class_probabilities, label_targets, model_temperature, swap_back
from llmcls.evaluate.decisions import decide, decided_labels
from llmcls.evaluate.scoring import prediction_table
from llmcls.model.base import load_tokenizer
from llmcls.model.store import load_trained_model

Texts = Sequence[str] | Sequence[Mapping[str, Any]] | pd.DataFrame


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings off for a block (its load report lists the llmcls head's keys as unexpected,
    before llmcls puts that head in place)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def pick_device(device: str) -> torch.device:
    """auto: the GPU where there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LlmclsError(f"device {device!r}: this machine has no CUDA GPU")
    return torch.device(device)


@dataclass
class TextClassifier:
    """A loaded model with its prompt, labels and inference settings."""

    model: torch.nn.Module
    tokenizer: Any
    labels: LabelSet
    prompt: dict[str, Any]
    meta: dict[str, Any]
    device: torch.device
    batch_size: int
    precision: str

    @cached_property
    def spec(self) -> DatasetSpec:
        return reader_spec(self.prompt)

    @cached_property
    def targets(self) -> list[list[int]] | None:
        """A generative model's label texts as token ids; None for a classification head."""
        return label_targets(self.meta, self.tokenizer)

    @property
    def text_columns(self) -> list[str]:
        """The columns the prompt reads, as the training data named them."""
        return list(self.spec.fields.values())

    def rows(
        self,
        frame: pd.DataFrame,
        origin: str = "input",
        skipped: list[BadRow] | None = None,
        id_column: str | None = None,
    ) -> pd.DataFrame:
        """Canonical rows (id, text fields, label if the frame has the training label column) of a raw table,
        with the stages' errors for a missing column or a bad row (or, given ``skipped``, bad rows dropped).
        Ids come from ``id_column``, else the training data's id column, else the row number."""
        spec = dataclasses.replace(self.spec, id_column=id_column) if id_column else self.spec
        required = self.text_columns + ([spec.id_column] if spec.id_column else [])
        fail_on(missing_columns(frame, required, origin), f"{origin}: not the columns the model reads")
        return canonical_rows(spec, frame, "input", origin, skipped, self.labels, skip_with="--bad-rows skip")

    def probabilities(
        self, rows: pd.DataFrame, swap_tta: bool | None = None, progress: Callable[[int], Any] | None = None
    ) -> np.ndarray:
        """The outputs of canonical rows as evaluate gives them: class probabilities at the model's calibrated
        temperature, label probabilities (multi-label), or scores (regression, one column).
        A pairwise model also scores each row with its two responses traded and averages both (``swap_tta``;
        default: what the run's evaluate stage did)."""
        encoded = encode_table(rows, self.prompt, self.tokenizer)

        def run(column: str) -> np.ndarray:
            sequences = encoded[column].tolist()
            return class_probabilities(
                self.model,
                self.meta,
                self.targets,
                sequences,
                self.batch_size,
                self.precision,
                self.device,
                progress,
                self.labels,
            )

        probs = run("input_ids")
        permutation = self.tta_permutation(swap_tta)
        if permutation:
            probs = (probs + swap_back(run("input_ids_swapped"), permutation)) / 2
        return apply_temperature(probs, model_temperature(self.meta))

    def tta_permutation(self, swap_tta: bool | None = None) -> list[int] | None:
        """The class permutation of A/B-swapped inputs when they are scored too: a pairwise model, and
        ``swap_tta`` (default: what the run's evaluate stage did); else None."""
        if swap_tta is None:
            swap_tta = bool(self.meta["params"]["evaluate"]["swap_tta"])
        return swap_permutation(self.spec, self.labels) if swap_tta else None

    def frame(self, texts: Texts) -> pd.DataFrame:
        """A raw table from API input: plain strings (a model reading one text column) or row mappings."""
        if isinstance(texts, pd.DataFrame):
            return texts
        texts = list(texts)
        if all(isinstance(t, str) for t in texts):
            if len(self.text_columns) != 1:
                raise LlmclsError(f"this model reads the columns {self.text_columns}: pass one mapping per row")
            return pd.DataFrame({self.text_columns[0]: texts})
        return pd.DataFrame.from_records(texts)

    def predict_proba(self, texts: Texts) -> np.ndarray:
        """(rows x classes) probabilities, classes in ``self.labels.names`` order; a regression's (rows x 1)
        scores."""
        return self.probabilities(self.rows(self.frame(texts)))

    def predict(self, texts: Texts) -> list:
        """Each text's prediction: the most probable class name, the list of labels over their thresholds
        (multi-label), or the score (its grade where the model has cut-points)."""
        outputs = self.predict_proba(texts)
        chosen = decide(self.labels, outputs, self.meta.get("decision"))
        if self.labels.task == REGRESSION:
            return [float(x) for x in chosen]
        return decided_labels(self.labels, chosen)

    def predict_table(
        self,
        frame: pd.DataFrame,
        origin: str = "input",
        skipped: list[BadRow] | None = None,
        id_column: str | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> pd.DataFrame:
        """evaluate's prediction layout: id, label (empty when the input has none), predicted, prob_<class> (a
        regression: predicted is the score, grade its grade where the model has cut-points)."""
        rows = self.rows(frame, origin, skipped, id_column)
        if rows.empty:
            dropped = f" ({len(skipped)} skipped as bad)" if skipped else ""
            raise LlmclsError(f"{origin}: no rows to predict{dropped}")
        outputs = self.probabilities(rows, progress=progress)
        return prediction_table(rows, outputs, self.labels, self.meta.get("decision"))


def load_classifier(
    path: str | Path,
    base: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str | None = None,
    trust_remote_code: bool = False,
) -> TextClassifier:
    """Load a model folder: a trained one (models/classifier; a LoRA adapter finds its base beside it in
    models/base unless ``base`` says otherwise) or one written by `llmcls export` (no base needed).
    ``batch_size`` and ``precision`` default to the run's own (evaluate.batch_size, the precision trained in).
    No Python from the folders runs unless ``trust_remote_code`` (a folder that needs it is refused)."""
    path = Path(path)
    for required in (META, PROMPT, LABELS):
        if not (path / required).is_file():
            raise LlmclsError(f"{path}: not an llmcls model folder ({required} missing; trained with an older llmcls?)")
    enable_fast_matmul()
    with quiet_transformers():  # a standalone folder's head keys do not fit the architecture's: expected
        # A standalone folder (full fine-tune, export) needs no base; an adapter's lies beside it by default.
        model, labels, meta = load_trained_model(path, base or path.parent / "base", None, trust_remote_code)
    target = pick_device(device)
    return TextClassifier(
        model=model.to(target),
        tokenizer=load_tokenizer(path, trust_remote_code),
        labels=labels,
        prompt=read_json(path / PROMPT),
        meta=meta,
        device=target,
        batch_size=batch_size or meta["params"]["evaluate"]["batch_size"],
        precision=resolve_precision(precision) if precision else inference_precision(meta["precision"]),
    )


WRITERS: dict[str, Callable[[pd.DataFrame, Path], Any]] = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def with_model_columns(
    frame: pd.DataFrame, classifier: TextClassifier, text_columns: list[str] | None, id_column: str | None, origin: str
) -> pd.DataFrame:
    """The input with its text columns under the names the model was trained with: those ``text_columns``
    name (--text-columns), the model's own where the input has them, or the input's one column that is not
    an id or a label when the model reads one text."""
    wanted = classifier.text_columns
    if not text_columns:
        if all(c in frame.columns for c in wanted):
            return frame
        spec = classifier.spec
        not_text = {id_column or spec.id_column, spec.label_column, *spec.label_onehot}
        others = [c for c in frame.columns if c not in not_text]
        if len(wanted) != 1 or len(others) != 1:
            missing = [c for c in wanted if c not in frame.columns]
            raise LlmclsError(
                f"{origin}: no column {missing[0]!r}, which the model was trained to read; columns are "
                f"{[str(c) for c in frame.columns]}. Name the input's text column(s) with --text-columns "
                f"({len(wanted)} column(s), in the order {wanted})"
            )
        text_columns = others
    if len(text_columns) != len(wanted):
        raise LlmclsError(f"--text-columns {text_columns}: the model reads {len(wanted)} text column(s) ({wanted})")
    fail_on(missing_columns(frame, text_columns, origin), f"{origin}: --text-columns not found")
    frame = frame.drop(columns=[c for c in wanted if c in frame.columns and c not in text_columns])
    return frame.rename(columns=dict(zip(text_columns, wanted, strict=True)))


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    out: str | Path,
    base: str | Path | None = None,
    text_columns: list[str] | None = None,
    id_column: str | None = None,
    read: dict[str, Any] | None = None,
    bad_rows: str = "error",
    batch_size: int | None = None,
    max_rows: int | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> str:
    """`llmcls predict`: one output row per input row (bad rows skipped only when asked), written all or
    nothing. ``text_columns`` names the input's text columns when they differ from the training data's;
    ``read`` holds reader options (sep, header, names, encoding). Returns a one-line summary."""
    out = Path(out)
    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        raise LlmclsError(f"--out {out}: write predictions as one of {sorted(WRITERS)}")
    classifier = load_classifier(model_dir, base, device, batch_size, trust_remote_code=trust_remote_code)
    frame = read_table(input_path, read)
    if max_rows is not None:
        frame = frame.head(max_rows)
    frame = with_model_columns(frame, classifier, text_columns, id_column, str(input_path))
    skipped: list[BadRow] | None = [] if bad_rows == "skip" else None
    passes = 2 if classifier.tta_permutation() else 1
    with Progress("predict", len(frame) * passes) as shown:
        table = classifier.predict_table(frame, str(input_path), skipped, id_column, progress=shown.update)
    with staged_file(out) as tmp:
        writer(table, tmp)
    summary = f"predict: {len(table)} rows -> {out} ({classifier.device}, {classifier.precision})"
    if skipped:
        shown = "; ".join(str(b) for b in skipped[:5])
        summary += f"; skipped {len(skipped)} bad row(s): {shown}" + (" ..." if len(skipped) > 5 else "")
    if table["label"].notna().all() and len(table):
        summary += "; " + agreement(table, classifier.labels.task)
    return summary


def agreement(table: pd.DataFrame, task: str) -> str:
    """How the predictions meet the input's own labels: accuracy (the whole label set for multi-label), or
    the RMSE of scores."""
    if task == REGRESSION:
        error = np.sqrt(((table["label"].astype(float) - table["predicted"]) ** 2).mean())
        return f"RMSE against the input's scores {error:.4f}"
    what = "label sets" if task == MULTI_LABEL else "labels"
    return f"accuracy against the input's {what} {(table['label'] == table['predicted']).mean():.4f}"
