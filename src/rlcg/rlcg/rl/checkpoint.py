"""Checkpoints: a directory with ``config.json`` and safetensors files. Nothing is ever unpickled.

``config.json`` names the weights file it belongs to. Saving writes new weights under a fresh
name, then replaces ``config.json`` atomically (``os.replace``), so a reader (or a run killed
mid-save) always sees a complete, consistent checkpoint. The files of the previous save are kept
until the next one, so that a reader who parsed the old ``config.json`` still finds its weights.
Only files of saves are ever deleted: those an earlier ``config.json`` named, and files under the
names saves give (``model-<tag>.safetensors``, ``train-<tag>.safetensors``) that no ``config.json``
names, left by a save killed before it replaced ``config.json``: each save lists its files in a
``.save-<tag>.pending`` file until ``config.json`` names them, and only files so listed are ever taken
for orphans; never other files in the directory (a weights file the user copied in stays).

``config.json`` also records each file's SHA-256 (``sha256``), and loading checks it: safetensors has
no checksum of its own, so a bit flipped on disk would otherwise load as a changed weight. Checkpoints
saved before the hashes were recorded load without the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from rlcg.errors import RlcgError

FORMAT = "rlcg-checkpoint"
VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


class CheckpointError(RlcgError):
    """A checkpoint is missing, incomplete, of the wrong kind, or not in rlcg's safe format."""


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of ``obj`` with every tensor moved into ``tensors`` (key in its place)."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """Optimizer state with integer keys as strings (restored by ``load_optimizer_state``)."""
    return opt.state_dict()


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state; moment tensors take their parameter's memory layout again.

    Checkpoints store tensors contiguous; a fused Adam step walks a parameter and its moments as
    flat memory, so moments left contiguous next to channels_last weights would update the wrong
    elements after a resume."""
    state = dict(state)
    state["state"] = {int(k): v for k, v in state["state"].items()}
    opt.load_state_dict(state)
    for param, slots in opt.state.items():
        for name, value in slots.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                slots[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


SAVED_FILE = re.compile(r"(model|train)-\d{8}-\d{6}-[0-9a-f]{8}\.safetensors")  # the names save_checkpoint gives


def save_checkpoint(
    path: str | Path,
    kind: str,
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    train_state: Any = None,
) -> Path:
    """Write (or update) the checkpoint directory ``path`` atomically; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for leftover in [*path.glob(".model-*.tmp"), *path.glob(".train-*.tmp"), *path.glob(".config-*.json")]:
        leftover.unlink(missing_ok=True)  # temporary files of a save that was killed
    previous = _named_files(path)  # (this checkpoint's files, those of the save before it)
    _delete_orphans(path, keep=previous[0])
    tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": kind, "config": config}
    files = {"weights": f"model-{tag}.safetensors"}
    if train_state is not None:
        files["train_state"] = f"train-{tag}.safetensors"
    pending = path / f".save-{tag}.pending"  # what this save writes, until config.json names it
    pending.write_text("\n".join(files.values()) + "\n")
    digests = {
        files["weights"]: _save_tensors(
            path / files["weights"], {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        )
    }
    if train_state is not None:
        tensors: dict[str, torch.Tensor] = {}
        tree = flatten_state(train_state, "s", tensors)
        digests[files["train_state"]] = _save_tensors(path / files["train_state"], tensors)
        meta["train_state"] = tree
    meta["files"] = files
    meta["sha256"] = digests
    meta["previous_files"] = sorted(previous[0])
    tmp = path / f".config-{tag}.json"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    _fsync(tmp)
    os.replace(tmp, path / "config.json")
    pending.unlink()
    # Keep this save's files and the previous save's (a reader may have read the old config.json just
    # before the replace); delete the generation before those.
    keep = previous[0] | set(files.values())
    for stale in previous[1] - keep:
        (path / stale).unlink(missing_ok=True)
    return path


def _delete_orphans(path: Path, keep: set[str]) -> None:
    """The files of saves killed before config.json named them, as their .pending lists say; a file
    no save of ours listed (a weights file the user copied in) is never touched."""
    for marker in path.glob(".save-*.pending"):
        try:
            names = marker.read_text().split()
        except (OSError, UnicodeDecodeError):
            names = []
        for name in names:
            if SAVED_FILE.fullmatch(name) and name not in keep:
                (path / name).unlink(missing_ok=True)
        marker.unlink(missing_ok=True)


def _named_files(path: Path) -> tuple[set[str], set[str]]:
    """The weights files the checkpoint's config.json names, and those of the save before it."""
    try:
        meta = json.loads((path / "config.json").read_text())
        current = {str(name) for name in meta["files"].values()}
        before = {str(name) for name in meta.get("previous_files", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none yet, or unreadable
        return set(), set()
    # only plain file names inside the directory: a damaged config must not delete anything else
    safe = {n for n in current | before if n.endswith(".safetensors") and Path(n).name == n}
    return current & safe, before & safe


def _save_tensors(file: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``tensors`` to ``file`` atomically; returns the file's SHA-256 (hex)."""
    data = save(tensors)
    tmp = file.with_name(f".{file.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)
    return hashlib.sha256(data).hexdigest()


def _fsync(file: Path) -> None:
    with open(file, "rb") as fh:
        os.fsync(fh.fileno())


def read_checkpoint_meta(path: str | Path, kind: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory and its parsed config.json, after checking format and kind."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: refusing to load a {path.suffix} file: rlcg never unpickles data from disk; "
            "checkpoints are directories with config.json and safetensors weights"
        )
    if path.is_file() and path.name == "config.json":
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (expected config.json + safetensors)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: no config.json: not an rlcg checkpoint (or an unfinished one)")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{cfg_file}: not an rlcg checkpoint (format {found!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{cfg_file}: checkpoint version {meta.get('version')} is not supported")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path}: is a {meta.get('kind')!r} checkpoint, expected {kind!r}")
    files = meta.get("files")
    if not (isinstance(meta.get("config"), dict) and isinstance(files, dict) and isinstance(files.get("weights"), str)):
        raise CheckpointError(f"{cfg_file}: damaged: it needs a 'config' object and 'files' naming the weights")
    if not all(isinstance(n, str) and n.endswith(".safetensors") and Path(n).name == n for n in files.values()):
        raise CheckpointError(f"{cfg_file}: damaged: 'files' must name .safetensors files in the checkpoint directory")
    if "sha256" in meta and not (
        isinstance(meta["sha256"], dict) and all(isinstance(v, str) for v in meta["sha256"].values())
    ):
        raise CheckpointError(f"{cfg_file}: damaged: 'sha256' must map file names to hex digests")
    return path, meta


def load_checkpoint(
    path: str | Path, kind: str | None = None, with_train_state: bool = False
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    """(config, weights, train_state or None) of a checkpoint directory."""
    path, meta = read_checkpoint_meta(path, kind)
    digests = meta.get("sha256", {})
    weights = _load_tensors(path / meta["files"]["weights"], digests)
    for name, tensor in weights.items():  # a diverged training's weights act without a sign: refuse them
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weights {name!r} hold NaN or infinite values (a training that diverged)")
    train_state = None
    if with_train_state and "train_state" in meta["files"]:
        tensors = _load_tensors(path / str(meta["files"]["train_state"]), digests)
        try:
            train_state = unflatten_state(meta["train_state"], tensors)
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: the training state in config.json does not match its file ({exc})") from exc
    return meta["config"], weights, train_state


def _load_tensors(file: Path, digests: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of ``file``, after checking its SHA-256 against ``digests`` (when it is listed)."""
    if not file.is_file():
        raise CheckpointError(f"{file}: weights file named by config.json is missing")
    data = file.read_bytes()
    want = digests.get(file.name)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise CheckpointError(
            f"{file}: damaged: its SHA-256 differs from the one config.json recorded when it was saved"
        )
    try:
        return load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types for bad files
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
