"""The project's DVC remotes: `storage`, where `dvc push` / `dvc pull` keep data, models and experiments;
`datasets`, the folder of dataset files (such as ../shared/datasets); and one `dataset-<name>` per dataset,
its own folder (`remote://datasets/sst2`; custom: data/custom), which is the fetch stage's only data dep in
dvc.yaml (remote://dataset-${dataset}/), so another dataset's files never re-run it.

All default to folders beside the project (.dvc/config). A queued experiment runs in a copy under
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


def remote_url(name: str, project: Path | None = None) -> str:
    """The URL of DVC remote ``name`` in this project's config (.dvc/config, overridden per machine by
    .dvc/config.local, as `dvc remote add --local` writes)."""
    remotes = dvc_config(project or Path.cwd())["remote"]
    if name not in remotes:
        raise LlmclsError(
            f"dvc.yaml names the DVC remote {name!r}, which .dvc/config does not define: run "
            f"`dvc remote add -f {name} /path/to/folder` (a dataset's folder: remote://datasets/<folder>)"
        )
    return remotes[name]["url"]


def resolve_folder(where: str, project: Path | None = None) -> Path:
    """A folder given as a path, or as `remote://<name>[/sub]`: the folder of that DVC remote (whose URL may
    itself be `remote://<other>/<sub>`, as the per-dataset remotes are)."""
    if not where.startswith(REMOTE):
        return Path(where)
    name, _, sub = where.removeprefix(REMOTE).strip("/").partition("/")
    url = remote_url(name, project)
    if url.startswith(REMOTE):
        folder = resolve_folder(url, project)
    elif (folder := local_folder(url)) is None:
        raise LlmclsError(f"the DVC remote {name!r} is {url}: the folder must be a local folder")
    return folder / sub if sub else folder


def recorded_name(where: str, project: Path | None = None) -> str:
    """How fetch's record names a folder: the URL a per-dataset remote points at (`remote://datasets/sst2`),
    the same on every machine; a plain path as given."""
    if where.startswith(REMOTE):
        name = where.removeprefix(REMOTE).strip("/").split("/")[0]
        url = remote_url(name, project)
        if url.startswith(REMOTE):
            return url.rstrip("/")
    return where.rstrip("/")


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
        for other in config["remote"].values():  # each dataset's folder, so its fetch dep exists (empty)
            if other["url"].startswith(f"{REMOTE}{DATASETS}/"):
                (folder / other["url"].removeprefix(f"{REMOTE}{DATASETS}/")).mkdir(parents=True, exist_ok=True)
        action = f"created (no folder at {url})"
    with config.edit("local") as conf:
        conf.setdefault("remote", {})[DATASETS] = {"url": str(folder.resolve())}
    return folder.resolve(), action
