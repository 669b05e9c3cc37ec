"""The named datasets and models (catalog.yaml), as typed specs."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmcls.core.errors import LlmclsError

CATALOG = Path(__file__).with_name("catalog.yaml")
CUSTOM = "custom"


@dataclass(frozen=True)
class DatasetSpec:
    """How to find a dataset and map its raw columns onto (id, fields..., label)."""

    name: str
    description: str
    fields: dict[str, str]
    text: str
    local: dict[str, str | list[str]] = field(default_factory=dict)  # split -> file (or candidates, first present)
    read: dict[str, Any] = field(default_factory=dict)
    hub: dict[str, Any] = field(default_factory=dict)
    package: dict[str, Any] = field(default_factory=dict)
    kaggle: dict[str, Any] = field(default_factory=dict)
    id_column: str | None = None
    label_column: str | None = None
    label_onehot: tuple[str, ...] = ()
    label_names: dict[Any, str] = field(default_factory=dict)
    class_labels: dict[str, str] = field(default_factory=dict)
    json_list_fields: tuple[str, ...] = ()
    swap: dict[str, Any] = field(default_factory=dict)
    label_pattern: str | None = None  # a regex whose one group captures the label from the raw label cell
    label_names_file: str | None = None  # one class name per line; fetch reads and records it
    task: str = "single_label"  # single_label | multi_label | regression (core.artifacts.TASKS)
    label_separator: str | None = None  # multi-label: what separates the labels in one cell (None: , ; or |)
    round_scores: bool = False  # regression: round every score to a whole number (a grade)

    @property
    def raw_columns(self) -> list[str]:
        """Columns every labelled raw split must have."""
        return list(self.fields.values()) + ([self.label_column] if self.label_column else list(self.label_onehot))


@dataclass(frozen=True)
class ModelSpec:
    """Where a base model's weights come from: a GGUF shipped in a package, the hub, or a local folder."""

    name: str
    description: str = ""
    hub_id: str | None = None
    gguf: dict[str, Any] = field(default_factory=dict)
    local_dir: str | None = None
    revision: str | None = None  # the hub commit the catalog pins


@functools.cache
def _catalog() -> dict[str, Any]:
    return yaml.safe_load(CATALOG.read_text(encoding="utf-8"))


def dataset_names() -> list[str]:
    return [*_catalog()["datasets"], CUSTOM]


def dataset_spec(name: str, custom: Any = None, task: str | None = None) -> DatasetSpec:
    """The spec of a named dataset; ``custom`` (CustomParams) describes the ``custom`` one; ``task`` (params
    `task`) replaces the dataset's own."""
    spec = _named_spec(name, custom)
    return dataclasses.replace(spec, task=task) if task else spec


def _named_spec(name: str, custom: Any) -> DatasetSpec:
    if name == CUSTOM:
        if custom is None:
            raise LlmclsError("dataset 'custom' needs the params section `custom`")
        local = {"train": custom.train_path} | ({"test": custom.test_path} if custom.test_path else {})
        fields = {f"text{i}" if i else "text": col for i, col in enumerate(custom.text_columns)}
        read: dict[str, Any] = {"encoding": custom.encoding}
        if custom.sep is not None:
            read["sep"] = custom.sep
        if not custom.header:
            read["header"] = None
        if custom.names:
            read["names"] = list(custom.names)
        names = custom.label_names
        return DatasetSpec(
            name=CUSTOM,
            description="a user-supplied table",
            fields=fields,
            text="\n\n".join(f"{{{f}}}" for f in fields),
            local=local,
            read=read,
            id_column=custom.id_column,
            label_column=None if custom.label_columns else custom.label_column,
            label_onehot=tuple(custom.label_columns or ()),
            label_separator=custom.label_separator,
            label_names=names if isinstance(names, dict) else {},
            label_names_file=names if isinstance(names, str) else None,
            label_pattern=custom.label_pattern,
        )
    entries = _catalog()["datasets"]
    if name not in entries:
        raise LlmclsError(f"unknown dataset {name!r}; choose from {dataset_names()}")
    entry = dict(entries[name])
    for key in ("label_onehot", "json_list_fields"):
        entry[key] = tuple(entry.get(key, ()))
    return DatasetSpec(name=name, **entry)


def model_problem(name: str) -> str | None:
    """Why ``name`` names no model (registry key, local folder or hub id), or None."""
    if name in _catalog()["models"] or Path(name).is_dir() or "/" in name:
        return None
    return f"unknown model {name!r}: use a registry key {list(_catalog()['models'])}, a hub id or a local folder"


def model_spec(name: str) -> ModelSpec:
    """Resolve a registry key, an existing local folder, or a hub id ("org/name")."""
    if problem := model_problem(name):
        raise LlmclsError(problem)
    models = _catalog()["models"]
    if name in models:
        return ModelSpec(name=name, **models[name])
    if Path(name).is_dir():
        return ModelSpec(name=name, local_dir=str(Path(name).resolve()))
    return ModelSpec(name=name, hub_id=name)
