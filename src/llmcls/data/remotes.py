"""The project's two DVC remotes: `datasets`, the folder of dataset files the fetch stage reads (a dep in
dvc.yaml as remote://datasets/), and `storage`, where `dvc push` / `dvc pull` keep data, models and
experiments.

Both default to folders beside the project (.dvc/config). A queued experiment runs in a copy under
.dvc/tmp/exps/, where a path relative to .dvc/ points elsewhere; DVC hands the copy this machine's
.dvc/config.local, so `setup` pins the datasets folder there as an absolute path.
"""

from __future__ import annotations

from pathlib import Path

from llmcls.core.errors import LlmclsError

DATASETS = "datasets"
REMOTE = "remote://"
# Where the datasets remote points when the configured folder does not exist on this machine.
EMPTY_DATASETS = Path("data") / "datasets"


def dvc_config(project: Path):
    """The DVC config of the project holding ``project`` (.dvc/config merged with .dvc/config.local)."""
    from dvc.config import Config
    from dvc.repo import Repo

    return Config(dvc_dir=Repo.find_dvc_dir(root=str(project)))


def local_folder(url: str | None) -> Path | None:
    """A remote's URL as a local folder; None when there is none or it is a cloud URL (s3://, ssh://...)."""
    return Path(url) if url and "://" not in url else None


def resolve_folder(where: str, project: Path | None = None) -> Path:
    """A folder given as a path, or as `remote://<name>`: the folder of that DVC remote in this project's
    config (`.dvc/config`, overridden per machine by `.dvc/config.local`, as `dvc remote add --local` writes)."""
    if not where.startswith(REMOTE):
        return Path(where)
    name = where.removeprefix(REMOTE).strip("/")
    remotes = dvc_config(project or Path.cwd())["remote"]
    if name not in remotes:
        raise LlmclsError(
            f"dvc.yaml names the DVC remote {name!r} (`{where}`), which .dvc/config does not define: "
            f"run `dvc remote add --local -f {name} /path/to/folder`, or `llmcls setup`"
        )
    folder = local_folder(remotes[name]["url"])
    if folder is None:
        raise LlmclsError(f"the DVC remote {name!r} is {remotes[name]['url']}: the folder must be a local folder")
    return folder


def pin_datasets_folder(project: Path | None = None) -> tuple[Path, str]:
    """Make sure this machine's .dvc/config.local names an existing datasets folder; return it and what was done."""
    project = (project or Path.cwd()).resolve()
    config = dvc_config(project)
    local = config.read("local").get("remote", {}).get(DATASETS)
    if local and Path(local["url"]).is_dir():
        return Path(local["url"]), "kept"
    url = config["remote"].get(DATASETS, {}).get("url")
    folder = local_folder(url)
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
