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


def _is_count(value) -> bool:
    """A non-negative int (not a bool, which JSON readers would otherwise let through as 0 or 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_index(path: Path, index: dict) -> None:
    """The fields readers and ingest rely on, with a DatasetError naming the first bad one."""

    def bad(field: str, want: str, where: dict, key: str) -> DatasetError:
        got = json.dumps(where[key]) if key in where else "missing"
        got = got if len(got) <= 60 else got[:57] + "..."
        return DatasetError(f"{path} is damaged: {field} must be {want}, not {got}")

    size = index.get("image_size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2 and all(_is_count(v) and v > 0 for v in size)
    ):
        raise bad("image_size", "null or two positive integers [H, W]", index, "image_size")
    for field in ("transitions", "episodes"):
        if not _is_count(index.get(field)):
            raise bad(field, "a non-negative integer", index, field)
    domains = index.get("domains")
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise bad("domains", "a list of strings", index, "domains")
    shards = index.get("shards")
    if not isinstance(shards, list):
        raise bad("shards", "a list of objects with a name and transitions", index, "shards")
    for k, shard in enumerate(shards):
        if not isinstance(shard, dict):
            raise bad(f"shards[{k}]", "an object with a name and transitions", {"s": shard}, "s")
        name = shard.get("name")
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise bad(f"shards[{k}].name", "the name of a shard directory", shard, "name")
        for field in ("transitions", "episodes"):
            if (field in shard or field == "transitions") and not _is_count(shard.get(field)):
                raise bad(f"shards[{k}].{field}", "a non-negative integer", shard, field)
    if shards and size is None:
        raise bad("image_size", "two positive integers [H, W] in a dataset with shards", index, "image_size")
    sources = index.get("sources")
    if not isinstance(sources, list) or not all(
        isinstance(s, dict) and isinstance(s.get("fingerprint"), str) for s in sources
    ):
        raise bad("sources", "a list of objects with a fingerprint", index, "sources")
    if "translation" in index and not (
        isinstance(index["translation"], dict) and isinstance(index["translation"].get("generator"), str)
    ):
        raise bad("translation", "an object naming its generator", index, "translation")


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
    _check_index(path, index)
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
def _brief(exc: BaseException) -> str:
    """The first line of an exception's message, cut short (numpy quotes a damaged header whole)."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 100 else text[:97] + "..."


def _read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """dtype, shape, data offset and file size of a .npy file, from its header alone."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DatasetError(f"{path} is empty (0 bytes)")
            if f.read(6) != np.lib.format.MAGIC_PREFIX:
                raise DatasetError(f"{path} is not a .npy file (it does not start with the .npy magic bytes)")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise DatasetError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}")
            except (ValueError, TypeError, SyntaxError) as exc:  # a cut or garbled header
                why = "its header cannot be parsed" if "parse header" in str(exc) else _brief(exc)
                raise DatasetError(f"{path} is not a readable .npy file: {why}") from exc
            return dtype, tuple(shape), f.tell(), size
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc.strerror or _brief(exc)}") from exc


def check_column(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """That the .npy file ``path`` holds a ``dtype`` array of ``shape``, whole: header and file size
    only, no data read."""
    got_dtype, got_shape, offset, size = _read_npy_header(path)
    if got_dtype != dtype or got_shape != shape:
        raise DatasetError(f"{path} holds {got_dtype} {got_shape}, the index expects {dtype} {shape}")
    want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < want:
        raise DatasetError(f"{path} is truncated: {size} bytes, its {dtype} {shape} array needs {want}")
    if size > want:
        raise DatasetError(f"{path} has {size - want} bytes past the end of its {dtype} {shape} array")


def check_shard(root: Path, shard: dict, image_size: tuple[int, int]) -> None:
    """The column files of one shard against the index, from their headers and sizes (cheap)."""
    folder = Path(root) / shard["name"]
    for name, (dtype, item_shape) in columns(image_size).items():
        check_column(folder / f"{name}.npy", dtype, (shard["transitions"], *item_shape))


# What readers and ingest take from each record of episodes.json (the fields of EpisodeRecord).
_EPISODE_FIELDS = {
    "index": int,
    "episode_id": str,
    "domain": str,
    "policy": str,
    "seed": int,
    "bin_index": int,
    "steps": int,
    "success": bool,
    "first": int,
    "bag": str,
    "start_ns": int,
    "end_ns": int,
}


def read_episodes(root: Path, shard: dict) -> list[dict]:
    """The episode records of one shard (its episodes.json), checked against the index."""
    path = Path(root) / shard["name"] / EPISODES
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc.strerror or _brief(exc)}") from exc
    except ValueError as exc:
        raise DatasetError(f"{path} is damaged: {_brief(exc)}") from exc
    if not isinstance(records, list):
        raise DatasetError(f"{path} is damaged: not a list of episode records")
    for k, r in enumerate(records):
        for field, kind in _EPISODE_FIELDS.items():
            value = r.get(field) if isinstance(r, dict) else None
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DatasetError(f"{path} is damaged: record {k} has no {kind.__name__} {field!r}")
    if "episodes" in shard and len(records) != shard["episodes"]:
        raise DatasetError(f"{path} holds {len(records)} episodes, the index expects {shard['episodes']}")
    return records


def verify_dataset(root: Path, index: dict) -> list[dict]:
    """Every shard of the dataset ``root`` checked without reading its columns' data: the .npy headers
    and sizes, episodes.json, and the index's counts. Returns the episode records of all shards."""
    size = tuple(index["image_size"]) if index["image_size"] else None
    records: list[dict] = []
    for shard in index["shards"]:
        check_shard(root, shard, size)
        records.extend(read_episodes(root, shard))
    transitions = sum(s["transitions"] for s in index["shards"])
    if len(records) != index["episodes"] or transitions != index["transitions"]:
        raise DatasetError(
            f"{Path(root) / INDEX}: its shards hold {len(records)} episodes and {transitions} transitions, "
            f"its counts say {index['episodes']} and {index['transitions']}"
        )
    return records


def load_shard(root: Path, shard: dict, image_size: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Memory-mapped columns and episode rows of one shard, checked against the index."""
    folder = Path(root) / shard["name"]
    arrays = {}
    for name, (dtype, item_shape) in columns(image_size).items():
        path = folder / f"{name}.npy"
        check_column(path, dtype, (shard["transitions"], *item_shape))
        try:
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # changed since it was checked
            raise DatasetError(f"{path}: cannot be memory-mapped: {_brief(exc)}") from exc
    return arrays, read_episodes(root, shard)
