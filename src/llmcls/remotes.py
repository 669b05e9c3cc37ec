"""The project's two DVC remotes: `datasets`, the folder of dataset files the fetch stage reads (a dep in
dvc.yaml as remote://datasets/), and `storage`, where `dvc push` / `dvc pull` keep data, models and
experiments.

Both default to folders beside the project (.dvc/config). A queued experiment runs in a copy under
.dvc/tmp/exps/, where a path relative to .dvc/ points elsewhere; DVC hands the copy this machine's
.dvc/config.local, so `setup` pins the datasets folder there as an absolute path.
"""

from __future__ import annotations

from pathlib import Path

DATASETS = "datasets"
# Where the datasets remote points when the configured folder does not exist on this machine.
EMPTY_DATASETS = Path("data") / "datasets"


def dvc_config(project: Path):
    """The DVC config of the project holding ``project`` (.dvc/config merged with .dvc/config.local)."""
    from dvc.config import Config
    from dvc.repo import Repo

    return Config(dvc_dir=Repo.find_dvc_dir(root=str(project)))


def pin_datasets_folder(project: Path | None = None) -> tuple[Path, str]:
    """Make sure this machine's .dvc/config.local names an existing datasets folder; return it and what was done."""
    project = (project or Path.cwd()).resolve()
    config = dvc_config(project)
    local = config.read("local").get("remote", {}).get(DATASETS)
    if local and Path(local["url"]).is_dir():
        return Path(local["url"]), "kept"
    url = config["remote"].get(DATASETS, {}).get("url")
    folder = Path(url) if url and "://" not in url else None
    action = "pinned"
    if folder is None or not folder.is_dir():
        # No such folder here: an empty one in the project keeps the fetch stage's dep valid (hub, package and
        # Kaggle sources still serve); put dataset files there or point the remote at your folder.
        folder = project / EMPTY_DATASETS
        folder.mkdir(parents=True, exist_ok=True)
        action = f"created (no folder at {url})"
    with config.edit("local") as conf:
        conf.setdefault("remote", {})[DATASETS] = {"url": str(folder.resolve())}
    return folder.resolve(), action
