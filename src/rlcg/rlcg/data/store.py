"""The on-disk layout of an ingested transition dataset (see docs/data-format.md).

A dataset directory holds ``dataset.json`` (the index: image size, domains, shards, ingested bags)
and shard directories ``shard_NNNNN/`` of ``.npy`` column files that are memory-mapped when read, plus
the shard's ``episodes.json``. Shards are never modified once written: appending writes new shards and
then replaces ``dataset.json`` atomically, so an interrupted ingest leaves the dataset as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlcg.errors import RlcgError

if TYPE_CHECKING:
    from rlcg.data.decode import EpisodeData

FORMAT = "rlcg-transitions"
VERSION = 1
INDEX = "dataset.json"
EPISODES = "episodes.json"
DEFAULT_SHARD_BYTES = 1 << 30  # images dominate; a shard closes at the first episode end past this
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 1024


class DatasetError(RlcgError):
    """A dataset directory that is missing, damaged, or of another format or version."""


def columns(image_size: tuple[int, int]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Column name -> (dtype, shape of one transition's entry)."""
    h, w = image_size
    return {
        "images": (np.dtype(np.uint8), (h, w, 3)),
        "next_images": (np.dtype(np.uint8), (h, w, 3)),
        "actions": (np.dtype(np.float32), (4,)),
        "rewards": (np.dtype(np.float32), ()),
        "dones": (np.dtype(np.bool_), ()),
        "episode_index": (np.dtype(np.int32), ()),
        "domain_index": (np.dtype(np.int16), ()),
        "step_index": (np.dtype(np.int16), ()),
    }


def is_dataset(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


# --------------------------------------------------------------------------- .npy files written in pieces
def _npy_header(dtype: np.dtype, count: int, item_shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header whose length does not depend on ``count`` (fixed-width field), so it
    can be rewritten in place once the number of rows is known."""
    dims = [f"{count:20d}"] + [str(s) for s in item_shape]
    shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    descr = np.lib.format.dtype_to_descr(dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape}, }}"
    prefix = 10  # magic (6) + version (2) + header length (2)
    pad = (-(prefix + len(text) + 1)) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


class NpyAppender:
    """Writes a .npy file row block by row block without holding it in memory."""

    def __init__(self, path: Path, dtype: np.dtype, item_shape: tuple[int, ...]):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.item_shape = tuple(item_shape)
        self.count = 0
        self._file = path.open("xb", buffering=0)  # unbuffered: blocks go straight to the kernel
        self._write(_npy_header(self.dtype, 0, self.item_shape))

    def _write(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self._file.write(view) :]

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.item_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.item_shape}")
        self._write(rows)
        self.count += len(rows)

    def append_rows(self, rows: list[np.ndarray]) -> None:
        """Append single rows (e.g. images that are views into a memory-mapped bag) with gathered
        writes: the kernel copies each row once, with no stacked copy in between."""
        fd = self._file.fileno()
        for start in range(0, len(rows), _IOV_MAX):
            group = [np.ascontiguousarray(r, dtype=self.dtype) for r in rows[start : start + _IOV_MAX]]
            for r in group:
                if r.shape != self.item_shape:
                    raise ValueError(f"{self.path.name}: a row of shape {r.shape}, expected {self.item_shape}")
            written = os.writev(fd, group)
            total = sum(r.nbytes for r in group)
            if written < total:  # a short write: finish it with plain writes
                self._write(b"".join(memoryview(r).cast("B") for r in group)[written:])
        self.count += len(rows)

    def close(self, fsync: bool = True) -> None:
        self._file.seek(0)
        self._write(_npy_header(self.dtype, self.count, self.item_shape))
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()


# --------------------------------------------------------------------------- writing
@dataclass
class EpisodeRecord:
    """One episode of a dataset (the rows of ``episodes.json``)."""

    index: int  # global episode number in the dataset
    episode_id: str
    domain: str
    policy: str
    seed: int
    bin_index: int
    steps: int
    success: bool
    first: int  # global index of its first transition
    bag: str
    start_ns: int
    end_ns: int


class ShardWriter:
    """Writes one shard: columns as .npy files in a hidden directory, renamed into place on close."""

    FLUSH_BYTES = 8 << 20  # rows are gathered up to this size, then written with one call per column

    def __init__(self, root: Path, name: str, image_size: tuple[int, int], fsync: bool = True):
        self.root = root
        self.name = name
        self.fsync = fsync
        self.tmp = root / f".partial-{name}"
        self.tmp.mkdir()
        self.files = {
            c: NpyAppender(self.tmp / f"{c}.npy", dt, shape) for c, (dt, shape) in columns(image_size).items()
        }
        self.episodes: list[EpisodeRecord] = []
        self.transitions = 0
        self.bytes = 0  # written so far
        self._pending: dict[str, list] = {c: [] for c in self.files}
        self._pending_bytes = 0
        self._row_bytes = sum(w.dtype.itemsize * int(np.prod(w.item_shape)) for w in self.files.values())

    def append(self, ep: EpisodeData, episode_index: int, domain_index: int, record: EpisodeRecord) -> None:
        """Add one episode's transitions (an ``rlcg.data.decode.EpisodeData``); rows are gathered and
        written in blocks of about ``FLUSH_BYTES``, one call per column."""
        n = len(ep.reward_list)
        p = self._pending
        p["images"].extend(ep.image_list)
        p["next_images"].extend(ep.next_image_list)
        p["actions"].extend(ep.action_list)
        p["rewards"].extend(ep.reward_list)
        p["dones"].extend(ep.done_list)
        p["episode_index"].extend([episode_index] * n)
        p["domain_index"].extend([domain_index] * n)
        p["step_index"].extend(range(n))
        self._pending_bytes += n * self._row_bytes
        self.transitions += n
        self.episodes.append(record)
        if self._pending_bytes >= self.FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        for name, writer in self.files.items():
            rows = self._pending[name]
            if rows:
                if name in ("images", "next_images"):
                    writer.append_rows(rows)
                    self.bytes += len(rows) * writer.dtype.itemsize * int(np.prod(writer.item_shape))
                else:
                    block = np.array(rows, dtype=writer.dtype)
                    writer.append(block)
                    self.bytes += block.nbytes
                rows.clear()
        self._pending_bytes = 0

    def close(self) -> dict:
        self._flush()
        for writer in self.files.values():
            writer.close(self.fsync)
        (self.tmp / EPISODES).write_text(json.dumps([vars(r) for r in self.episodes]), encoding="utf-8")
        self.tmp.rename(self.root / self.name)
        return {"name": self.name, "transitions": self.transitions, "episodes": len(self.episodes)}

    def abort(self) -> None:
        """Close the files and remove the unfinished shard."""
        for writer in self.files.values():
            if not writer._file.closed:
                writer._file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_index(root: Path) -> dict:
    path = Path(root) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{root} is not an rlcg dataset (no {INDEX})") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is damaged: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DatasetError(f"{path} is not an {FORMAT} index")
    if index.get("version") != VERSION:
        raise DatasetError(f"{path} has format version {index.get('version')}; this rlcg reads version {VERSION}")
    return index


def write_index(root: Path, index: dict, fsync: bool = False) -> None:
    """Replace the index atomically (readers see the old or the new one, never a mix)."""
    index["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = Path(root) / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    if fsync:
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
    tmp.replace(Path(root) / INDEX)


def new_index(image_size: tuple[int, int] | None) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "format": FORMAT,
        "version": VERSION,
        "image_size": list(image_size) if image_size else None,
        "transitions": 0,
        "episodes": 0,
        "domains": [],
        "shards": [],
        "sources": [],
        "created": now,
        "updated": now,
    }


def next_shard_name(root: Path, index: dict) -> str:
    taken = {s["name"] for s in index["shards"]}
    taken |= {p.name.removeprefix(".partial-") for p in Path(root).iterdir()}
    k = len(index["shards"])
    while f"shard_{k:05d}" in taken:
        k += 1
    return f"shard_{k:05d}"


# --------------------------------------------------------------------------- reading
def load_shard(root: Path, shard: dict, image_size: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Memory-mapped columns and episode rows of one shard, checked against the index."""
    folder = Path(root) / shard["name"]
    arrays = {}
    for name, (dtype, item_shape) in columns(image_size).items():
        path = folder / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot be memory-mapped: {exc}") from exc
        if arr.dtype != dtype or arr.shape != (shard["transitions"], *item_shape):
            raise DatasetError(
                f"{path} holds {arr.dtype} {arr.shape}, the index expects {dtype} {(shard['transitions'], *item_shape)}"
            )
        arrays[name] = arr
    try:
        episodes = json.loads((folder / EPISODES).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{folder / EPISODES}: {exc}") from exc
    return arrays, episodes
