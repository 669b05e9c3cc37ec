"""`llmcls verify`: re-hash the DVC cache objects a checkout would use, so a corrupted one is found before
`dvc checkout`, `dvc exp apply`, a run-cache restore or `dvc push` hands it on.

DVC trusts its local cache: a cache file changed after it was written (a bad disk, a partial copy, an edit
through a hard link) is checked out as it is, and `dvc status` compares the workspace, not the cache (DVC
issues 5978 and 9561). A cache object's name is the md5 of its bytes (a folder's ``.dir`` listing too), so
hashing each one again is a complete check.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmcls.core.errors import LlmclsError


@dataclass(frozen=True)
class Damaged:
    """A cache object whose bytes no longer hash to its name, and where dvc.lock uses it: (stage, output)
    pairs (one object can be several outputs with the same bytes)."""

    object: Path
    uses: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        used = "; ".join(f"{out}, stage {stage}" for stage, out in self.uses)
        return f"{self.object}" + (f" ({used})" if used else "")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def object_path(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def locked_objects(root: Path, cache: Path) -> dict[Path, list[tuple[str, str]]]:
    """Every cache object dvc.lock's outputs use (folder listings and their files): path -> [(stage, out)]."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        raise LlmclsError(f"{lock}: not found; run `dvc repro` first, or pass --all to check the whole cache")
    used: dict[Path, list[tuple[str, str]]] = {}
    for stage, entry in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
        for out in entry.get("outs", []):
            md5 = out.get("md5")
            if not md5:
                continue
            listing = object_path(cache, md5)
            used.setdefault(listing, []).append((stage, out["path"]))
            if md5.endswith(".dir") and listing.is_file() and md5_of(listing) == md5.removesuffix(".dir"):
                for item in json.loads(listing.read_text()):
                    use = (stage, f"{out['path']}/{item['relpath']}")
                    used.setdefault(object_path(cache, item["md5"]), []).append(use)
    return used


def verify_cache(root: str | Path = ".", everything: bool = False) -> tuple[int, list[Damaged]]:
    """(objects checked, damaged ones): dvc.lock's objects that are in the cache, or with ``everything``
    every object in it. Objects not in the cache (never pulled) are not damage: `dvc status -c` lists them."""
    from dvc.repo import Repo

    root = Path(root)
    cache = Path(Repo(str(root)).cache.local.path)
    used = locked_objects(root, cache) if not everything else {}
    objects = sorted(cache.glob("*/*")) if everything else sorted(p for p in used if p.is_file())
    damaged = [
        Damaged(path, tuple(used.get(path, ())))
        for path in objects
        if md5_of(path) != (path.parent.name + path.name).removesuffix(".dir")
    ]
    return len(objects), damaged


def damage_report(damaged: list[Damaged]) -> str:
    """The error for damaged objects: which, where used, and how to get good copies back."""
    stages = sorted({stage for d in damaged for stage, _ in d.uses})
    lines = "\n".join(f"  - {d}" for d in damaged)
    rerun = f"`dvc repro -f {' '.join(stages)}` to rebuild them, or " if stages else ""
    return (
        f"{len(damaged)} DVC cache object(s) no longer match their hash:\n{lines}\n"
        f"Delete them, then {rerun}`dvc pull` them from a remote that holds good copies."
    )
