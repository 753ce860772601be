"""Finding rosbag2 bags on disk and reading their raw messages in recording order.

MCAP files are read with ``rlcg.data.mcap_scan`` (tolerates killed recordings and damaged chunks),
sqlite3 files with Python's sqlite3 module. Neither needs the bag's metadata.yaml: a recording that
was killed before writing its final metadata is read all the same.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlcg.data.mcap_scan import McapScanner
from rlcg.errors import RlcgError

log = logging.getLogger("rlcg.data")

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
METADATA = "metadata.yaml"


class BagNotFoundError(RlcgError, FileNotFoundError):
    """A path that holds no rosbag2 bag."""


@dataclass
class Problem:
    kind: str
    file: str
    episode: str
    text: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f", episode {self.episode}" if self.episode else "")
        return f"{where}: {self.text} [{self.kind}]"


@dataclass
class Problems:
    """Counted warnings about bad input: what was skipped or converted, where, and why."""

    items: list[Problem] = field(default_factory=list)
    echo: bool = False  # also log each problem as it happens

    def add(self, kind: str, file: str | Path, episode: str, text: str) -> None:
        problem = Problem(kind, str(file), episode, text)
        self.items.append(problem)
        if self.echo:
            log.warning("%s", problem)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items())) or "none"


def _has_bag_files(path: Path) -> bool:
    return any(p.suffix in STORAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def is_bag(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix in STORAGE_SUFFIXES
    return path.is_dir() and ((path / METADATA).is_file() or _has_bag_files(path))


def find_bags(path: str | Path) -> list[Path]:
    """The bags at ``path``: the bag itself (a bag directory or a .mcap/.db3 file), or every bag below it."""
    path = Path(path)
    if not path.exists():
        raise BagNotFoundError(f"{path}: no such file or directory")
    if not path.is_dir():
        if is_bag(path):
            return [path]
        raise BagNotFoundError(f"{path}: not a rosbag2 bag (a directory with metadata.yaml, a .mcap or a .db3 file)")
    # A directory's own storage files are a bag; bag directories below it are bags too (a folder of
    # recordings that also holds a loose .mcap file must not hide them).
    found: list[Path] = [path] if is_bag(path) else []
    for child in sorted(path.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            found.extend(find_bags(child))
    return found


def read_bag_metadata(bag: Path) -> tuple[dict | None, str | None]:
    """The rosbag2_bagfile_information of a bag directory's metadata.yaml, or None with what is wrong
    with the file (None as well when there is none: a recording killed before writing it). A damaged
    metadata.yaml is no reason to stop: the storage files are read without it."""
    meta = Path(bag) / METADATA
    if Path(bag).is_file() or not meta.is_file():
        return None, None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster where present
        data = yaml.load(meta.read_text(encoding="utf-8"), Loader=loader)
    except Exception as exc:  # any file that does not parse
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, f"{METADATA} cannot be read ({why}); the storage files are read without it"
    if data is None:
        return None, f"{METADATA} is empty; the storage files are read without it"
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        return None, f"{METADATA} holds no rosbag2_bagfile_information; the storage files are read without it"
    return info, None


def bag_metadata(bag: Path) -> dict | None:
    """The rosbag2_bagfile_information of a bag directory's metadata.yaml, or None."""
    return read_bag_metadata(bag)[0]


def storage_files(bag: Path, problems: Problems | None = None) -> list[Path]:
    """The storage files of a bag, in recording order."""
    bag = Path(bag)
    if bag.is_file():
        return [bag]
    info = bag_metadata(bag)
    files: list[Path] = []
    if info is not None:
        for rel in info.get("relative_file_paths") or []:
            f = bag / str(rel)
            if f.suffix in STORAGE_SUFFIXES and f.is_file():
                files.append(f)
            elif problems is not None:
                why = "missing" if not f.exists() else "not an uncompressed .mcap or .db3 file (unsupported)"
                problems.add("unreadable", f, "", f"storage file listed in metadata.yaml is {why}")
    listed = set(files)
    # Files metadata.yaml does not list (a recording killed before it was updated) are read too.
    extra = sorted(
        (p for p in bag.iterdir() if p.suffix in STORAGE_SUFFIXES and p not in listed and p.is_file()),
        key=_natural_key,  # rosbag2 numbers split files bag_0, bag_1, ..., bag_10: not in text order
    )
    return files + extra


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class BagReader:
    """Raw messages of one bag (all its storage files) in recording order.

    Damage is reported to ``problems`` (kinds ``truncated``, ``corrupt``, ``unreadable``) and reading
    goes on with what is left.
    """

    def __init__(
        self, bag: str | Path, problems: Problems, files: list[Path] | None = None, count_topics: bool = False
    ):
        self.bag = Path(bag)
        self.count_topics = count_topics  # fills topic_counts / topic_types (rlcg data info)
        self.problems = problems
        self.files = files if files is not None else storage_files(self.bag, problems)
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self.file: Path | None = None
        self._done_bytes = 0
        self._scanner: McapScanner | None = None
        self.topic_counts: Counter[str] = Counter()
        self.topic_types: dict[str, str] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None

    @property
    def bytes_read(self) -> int:
        return self._done_bytes + (self._scanner.position if self._scanner is not None else 0)

    def messages(self) -> Iterator[tuple[str, str, int, memoryview | bytes]]:
        """``(topic, msgtype, log_time_ns, cdr)`` of every ROS 2 message, in storage order."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[tuple[str, str, int, memoryview | bytes]]]:
        """The same messages in lists (one per MCAP chunk): the decoder's loop runs once per message, and
        a generator step per message would cost as much as the reading."""
        if not self.files:
            self.problems.add("unreadable", self.bag, "", "the bag holds no .mcap or .db3 storage file")
        counts: Counter[tuple[str, str]] = Counter()
        lo, hi = None, None
        for f in self.files:
            self.file = f
            reader = self._mcap(f) if f.suffix == ".mcap" else self._sqlite(f)
            for batch in reader:
                if not batch:
                    continue
                if self.count_topics:
                    counts.update((m[0], m[1]) for m in batch)
                lo = batch[0][2] if lo is None else min(lo, batch[0][2])
                hi = batch[-1][2] if hi is None else max(hi, batch[-1][2])
                yield batch
            self._scanner = None
            self._done_bytes += f.stat().st_size
        for (topic, msgtype), n in counts.items():
            self.topic_counts[topic] += n
            self.topic_types.setdefault(topic, msgtype)
        # First and last log times in storage order bound the recording (order is checked by the decoder).
        self.start_ns, self.end_ns = lo, hi

    def _mcap(self, path: Path) -> Iterator[list[tuple[str, str, int, memoryview]]]:
        def on_problem(kind: str, text: str) -> None:
            self.problems.add(kind, path, "", text)

        self._scanner = McapScanner(path, on_problem)
        return self._scanner.batches()

    def _sqlite(self, path: Path, batch_size: int = 256) -> Iterator[list[tuple[str, str, int, bytes]]]:
        try:
            con = _open_sqlite(path)
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # damaged text pages fail to decode
            self.problems.add("corrupt", path, "", f"cannot open the sqlite3 database: {exc}")
            return
        batch: list[tuple[str, str, int, bytes]] = []
        try:
            topics = {
                tid: (name, msgtype, fmt)
                for tid, name, msgtype, fmt in con.execute("SELECT id, name, type, serialization_format FROM topics")
            }
            rows = con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id")
            for tid, stamp, data in rows:
                topic = topics.get(tid)
                if topic is None:
                    self.problems.add("corrupt", path, "", f"a message refers to an unknown topic id {tid}")
                    continue
                if topic[2] != "cdr":
                    continue
                batch.append((topic[0], topic[1], int(stamp), data))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self.problems.add("corrupt", path, "", f"the sqlite3 database is damaged, the rest of it is lost: {exc}")
            if batch:
                yield batch  # the rows read before the damage
        finally:
            con.close()


def _open_sqlite(path: Path) -> sqlite3.Connection:
    """Read-only when possible; a database left with a hot journal by a killed writer must be rolled
    back first, which only a writable connection does (as any SQLite reader, ros2 bag included, would)."""
    try:
        return _checked_connection(f"{path.resolve().as_uri()}?mode=ro")  # as_uri escapes '#', '?', '%'
    except sqlite3.OperationalError as exc:
        journal = path.with_name(path.name + "-journal")
        if journal.exists() or "readonly" in str(exc):
            return _checked_connection(str(path), uri=False)
        raise


def _checked_connection(database: str, uri: bool = True) -> sqlite3.Connection:
    """A connection whose topics table can be read; closed again when it cannot."""
    con = sqlite3.connect(database, uri=uri)
    try:
        con.execute("SELECT count(*) FROM topics").fetchone()
    except BaseException:
        con.close()
        raise
    return con
