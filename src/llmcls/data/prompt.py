"""Prompt wrapping with truncation *inside* the template.

A prompt is literal template text around a row's fields. When it is too long, only the fields shrink, and
they shrink fairly (water-filling: short fields keep everything, long ones share what is left), so the
closing cue (`...answer:`) always survives and the last-token classifier reads it, never mid-sentence.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmcls.core.errors import LlmclsError


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
