"""Prompt wrapping with truncation *inside* the template.

A prompt is literal template text around a row's fields. When it is too long, only the fields shrink, and
they shrink fairly (water-filling: short fields keep everything, long ones share what is left), so the
closing cue (`...answer:`) always survives and the last-token classifier reads it, never mid-sentence.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llmcls.config.catalog import DatasetSpec
from llmcls.core.artifacts import REGRESSION, LabelSet
from llmcls.core.errors import LlmclsError
from llmcls.data.rows import with_label_ids


def compose_template(wrapper: str | None, body: str, class_labels: Sequence[str]) -> str:
    """The full template: ``wrapper`` with {text} -> the dataset's field composition and {class_labels} filled."""
    template = body if wrapper is None else wrapper.replace("{text}", body)
    return template.replace("{class_labels}", ", ".join(class_labels))


def fair_budgets(lengths: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` tokens among fields of ``lengths``: the largest cap c with sum(min(len, c)) <= budget,
    then the remainder one token at a time to the fields still cut, in order."""
    if sum(lengths) <= budget:
        return list(lengths)
    cap, remaining, open_fields = 0, budget, sorted(range(len(lengths)), key=lambda i: lengths[i])
    budgets = [0] * len(lengths)
    while open_fields:
        share = remaining // len(open_fields)
        shortest = open_fields[0]
        if lengths[shortest] <= share:
            budgets[shortest] = lengths[shortest]
            remaining -= lengths[shortest]
            open_fields.pop(0)
            continue
        cap = share
        for i in open_fields:
            budgets[i] = cap
        remaining -= cap * len(open_fields)
        for i in sorted(open_fields)[:remaining]:
            budgets[i] += 1
        break
    return budgets


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    truncated: bool


class PromptEncoder:
    """Turns a row's fields into token ids for one template, never longer than ``max_length``, unless the
    template alone leaves less than ``min_text_tokens`` for the text: a long template (many class names
    listed) then gets that many text tokens anyway, and ``self.max_length`` says the resulting cap."""

    def __init__(
        self, tokenizer, template: str, max_length: int, truncation_side: str = "right", min_text_tokens: int = 0
    ):
        self.tokenizer = tokenizer
        self.keep_head = truncation_side == "right"
        self.parts: list[tuple[str, str | None]] = []  # (literal, field name or None)
        for literal, field, spec, conversion in string.Formatter().parse(template):
            if spec or conversion:
                raise LlmclsError(f"template field {{{field}}}: format specs are not supported")
            self.parts.append((literal, field))
        self.fields = [f for _, f in self.parts if f is not None]
        self.literal_ids = [self._ids(literal) for literal, _ in self.parts]
        self.prefix, self.suffix = self._special_tokens()
        self.fixed = sum(map(len, self.literal_ids)) + len(self.prefix) + len(self.suffix)
        self.budget = max(max_length - self.fixed, min_text_tokens)
        self.max_length = self.fixed + self.budget
        if self.budget < 8 * max(1, len(self.fields)):
            raise LlmclsError(
                f"preprocess.max_length: {max_length} tokens leave only {self.budget} for the text after the "
                f"template's {self.fixed}; raise max_length or min_text_tokens, or shorten preprocess.template"
            )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The tokens the tokenizer adds around a text (e.g. BOS), found by encoding a probe both ways."""
        probe = "classification"
        plain = self._ids(probe)
        full = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        return [], []

    def encode(self, values: Mapping[str, str]) -> Encoded:
        return self._assemble([self._ids(values[f]) for f in self.fields])

    def encode_batch(self, columns: Mapping[str, Sequence[str]]) -> list[Encoded]:
        """Encode many rows; each field column is tokenised in one fast batch call."""
        n_rows = len(next(iter(columns.values()))) if columns else 0
        tokenized = [
            self.tokenizer(list(columns[f]), add_special_tokens=False)["input_ids"] if n_rows else []
            for f in self.fields
        ]
        return [self._assemble([ids[row] for ids in tokenized]) for row in range(n_rows)]

    def _assemble(self, field_ids: list[list[int]]) -> Encoded:
        budgets = fair_budgets([len(ids) for ids in field_ids], self.budget)
        truncated = any(b < len(ids) for b, ids in zip(budgets, field_ids, strict=True))
        pairs = zip(field_ids, budgets, strict=True)
        kept = iter(ids[:b] if self.keep_head else ids[len(ids) - b :] for ids, b in pairs)
        out = list(self.prefix)
        for (_, field), literal in zip(self.parts, self.literal_ids, strict=True):
            out += literal
            if field is not None:
                out += next(kept)
        return Encoded(out + self.suffix, truncated)


def shown_class_names(spec: DatasetSpec, labels: LabelSet) -> list[str]:
    """The class names as prompts and answers show them (the catalog's readable names where it has them); a
    score has no classes to list."""
    if labels.task == REGRESSION:
        return []
    return [spec.class_labels.get(n, n) for n in labels.names]


def class_list_fits(tokenizer, texts: list[str], max_tokens: int | None) -> bool:
    """Whether the class names, listed, take at most ``max_tokens`` (None: no limit). A long list between a text
    and the `answer:` cue buries the text for the last-token head and multiplies every row's length
    (docs/results.md, "Many classes")."""
    return max_tokens is None or len(tokenizer(", ".join(texts), add_special_tokens=False)["input_ids"]) <= max_tokens


def prompt_record(
    spec: DatasetSpec,
    labels: LabelSet,
    wrapper: str | None,
    max_length: int,
    truncation_side: str,
    min_text_tokens: int = 0,
    list_labels: bool = True,
) -> dict[str, Any]:
    """Everything that turns a raw row into the model's input: the composed template, its truncation, and how
    rows are read. Saved as prompt.json with the data and beside every trained model, so `llmcls predict`
    encodes new texts exactly as training did without params.yaml or the catalog. ``list_labels`` false
    leaves {class_labels} empty (see class_list_fits)."""
    shown = shown_class_names(spec, labels)
    return {
        "template": compose_template(wrapper, spec.text, shown if list_labels else []),
        "class_labels_listed": list_labels,
        "max_length": max_length,
        "min_text_tokens": min_text_tokens,
        "truncation_side": truncation_side,
        "label_texts": shown,
        "reader": {
            "fields": dict(spec.fields),
            "json_list_fields": list(spec.json_list_fields),
            "id_column": spec.id_column,
            "label_column": spec.label_column,
            "label_onehot": list(spec.label_onehot),
            "label_names": {str(k): v for k, v in spec.label_names.items()},
            "label_pattern": spec.label_pattern,
            "swap": dict(spec.swap),
            "task": spec.task,
            "label_separator": spec.label_separator,
            "round_scores": spec.round_scores,
        },
    }


def reader_spec(record: dict[str, Any], name: str = "saved") -> DatasetSpec:
    """The row-reading part of a DatasetSpec, back from a prompt record (what canonical_rows needs)."""
    reader = dict(record["reader"])
    for key in ("json_list_fields", "label_onehot"):
        reader[key] = tuple(reader[key])
    return DatasetSpec(name=name, description="from prompt.json", text=record["template"], **reader)


def prompt_encoder(record: dict[str, Any], tokenizer) -> PromptEncoder:
    """The encoder of a prompt record (a record written before min_text_tokens existed had no floor)."""
    return PromptEncoder(
        tokenizer,
        record["template"],
        record["max_length"],
        record["truncation_side"],
        record.get("min_text_tokens", 0),
    )


def swapped_fields(table: pd.DataFrame, swap: dict[str, Any]) -> pd.DataFrame:
    """``table`` with the two fields of a spec's ``swap`` exchanged (response B shown as A and A as B)."""
    first, second = swap["fields"]
    return table.assign(**{first: table[second], second: table[first]})


def encode_table(table: pd.DataFrame, record: dict[str, Any], tokenizer) -> pd.DataFrame:
    """Add input_ids / length / truncated columns for a prompt record; a pairwise dataset also gets
    input_ids_swapped, its prompts with the two responses traded (for TTA)."""
    encoder = prompt_encoder(record, tokenizer)
    encoded = encoder.encode_batch({f: table[f].tolist() for f in encoder.fields})
    out = table.assign(
        input_ids=[e.input_ids for e in encoded],
        length=[len(e.input_ids) for e in encoded],
        truncated=[e.truncated for e in encoded],
    )
    if swap := record["reader"]["swap"]:
        traded = swapped_fields(table, swap)
        out["input_ids_swapped"] = [
            e.input_ids for e in encoder.encode_batch({f: traded[f].tolist() for f in encoder.fields})
        ]
    return out


def encode_prompts(
    table: pd.DataFrame,
    spec: DatasetSpec,
    labels: LabelSet,
    tokenizer,
    wrapper: str | None,
    max_length: int,
    truncation_side: str,
) -> pd.DataFrame:
    """Add label_id and the prompt's input_ids / length / truncated columns (tokenised once for train and
    evaluate); see encode_table."""
    return with_label_ids(
        encode_table(table, prompt_record(spec, labels, wrapper, max_length, truncation_side), tokenizer), labels
    )
