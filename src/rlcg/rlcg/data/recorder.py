"""Recording episodes as rosbag2 bags without ROS (pure-Python ``rosbags`` writer).

One ``EpisodeRecorder`` is one recording session: it writes the bags ``<out_dir>/episodes_0000``,
``episodes_0001`` ... (a new one after ``max_episodes_per_bag`` episodes or ``max_bag_bytes`` bytes),
each readable by ``ros2 bag info`` / ``ros2 bag play`` of the chosen distro. It never writes into a
directory that holds a bag already.

Durability: after each complete episode (``write`` or ``end_episode``) everything recorded so far
is flushed to the storage file (an MCAP chunk closed, or an sqlite3 transaction committed) and, by
default, fsynced. A process killed at any moment loses at most the episode in progress; the bag then
has no MCAP footer/summary, which rlcg's readers accept (``ros2 bag reindex`` rebuilds the index).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import yaml

from rlcg.data import topics
from rlcg.data.bags import find_bags, is_bag
from rlcg.data.encode import episode_messages
from rlcg.data.episode import Episode
from rlcg.data.types import DISTROS, typestore
from rlcg.errors import RlcgError

STORAGES = ("mcap", "sqlite3")
BAG_VERSION = {"jazzy": 9, "humble": 8}  # rosbag2 metadata versions the distros' readers expect
BAG_PREFIX = "episodes"
FORMAT_TAG = "rlcg-episodes/1"


class RecorderError(RlcgError):
    """Bad recorder arguments or a message that cannot be recorded."""


class BagExistsError(RecorderError, FileExistsError):
    """The output directory already holds a bag: rlcg never overwrites or appends to one."""


class EpisodeRecorder:
    """An ``EpisodeSink`` that records episodes into rosbag2 bags (also usable as a context manager)."""

    def __init__(
        self,
        out_dir: str | Path,
        storage: str = "mcap",
        distro: str = "jazzy",
        max_episodes_per_bag: int | None = None,
        max_bag_bytes: int | None = None,
        fsync: bool = True,
    ):
        if storage not in STORAGES:
            raise RecorderError(f"unknown bag storage {storage!r} (supported: {', '.join(STORAGES)})")
        if distro not in DISTROS:
            raise RecorderError(f"unknown ROS 2 distro {distro!r} (supported: {', '.join(DISTROS)})")
        if max_episodes_per_bag is not None and max_episodes_per_bag < 1:
            raise RecorderError(f"max_episodes_per_bag must be at least 1, got {max_episodes_per_bag}")
        if max_bag_bytes is not None and max_bag_bytes < 1:
            raise RecorderError(f"max_bag_bytes must be positive, got {max_bag_bytes}")
        if not str(out_dir).strip():
            raise RecorderError("the bag directory has no name (an empty --out or bag_dir)")
        self.out_dir = Path(out_dir).expanduser()  # `bag_dir:=~/bags` reaches a ROS node unexpanded
        _refuse_existing(self.out_dir)
        self.storage = storage
        self.distro = distro
        self.max_episodes_per_bag = max_episodes_per_bag
        self.max_bag_bytes = max_bag_bytes
        self.fsync = fsync
        self.typestore = typestore(distro)
        self.bags: list[Path] = []  # every bag this recorder started, in order
        self.episodes = 0  # complete episodes recorded
        self._writer = None
        self._connections: dict[tuple[str, str], object] = {}
        self._episodes_in_bag = 0
        self._pending = False  # messages written since the last complete episode
        self._last_ns = 0
        self._closed = False

    # ------------------------------------------------------------------ EpisodeSink
    def write(self, episode: Episode) -> None:
        """Record one complete episode and make it durable."""
        if not episode.steps:
            raise RecorderError(f"episode {episode.meta.episode_id} has no steps: nothing to record")
        try:  # every message first: a malformed step must not leave half an episode in the bag
            serialized = [
                (out.topic, out.msgtype, self.typestore.serialize_cdr(out.msg, out.msgtype), log_time)
                for out, log_time in episode_messages(episode, self._clock, self.distro)
            ]
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            why = f"episode {episode.meta.episode_id} cannot be recorded (nothing of it was written): {exc}"
            raise RecorderError(why) from exc
        for topic, msgtype, cdr, log_time in serialized:
            self._write(topic, msgtype, cdr, log_time)
        self.end_episode()

    def close(self) -> None:
        """Finish the current bag (MCAP summary and footer, final metadata.yaml)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ raw API (the ROS recorder node)
    def write_raw(self, topic: str, msgtype: str, cdr: bytes, stamp_ns: int) -> None:
        """Record one CDR-serialized message (as rclpy delivers it with raw=True) at log time ``stamp_ns``."""
        expected = topics.TOPIC_TYPES.get(topic)
        if expected is not None and expected != msgtype:
            raise RecorderError(f"topic {topic} carries {expected} in rlcg bags, got {msgtype}")
        if msgtype not in self.typestore.types:
            raise RecorderError(f"message type {msgtype} is unknown to the {self.distro} type store")
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise RecorderError(f"a log time cannot be negative, got {stamp_ns} ns")
        self._last_ns = max(self._last_ns, stamp_ns)
        self._write(topic, msgtype, cdr, stamp_ns)

    def end_episode(self) -> None:
        """Mark that a complete episode has been written: make it durable, then roll over to a new bag
        if this one reached ``max_episodes_per_bag`` or ``max_bag_bytes``."""
        if self._writer is None or not self._pending:
            return
        self._flush()
        self._pending = False
        self.episodes += 1
        self._episodes_in_bag += 1
        self._write_metadata()
        full = self.max_episodes_per_bag is not None and self._episodes_in_bag >= self.max_episodes_per_bag
        if self.max_bag_bytes is not None and self._bag_bytes() >= self.max_bag_bytes:
            full = True
        if full:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ internals
    def _clock(self) -> int:
        """Strictly increasing nanoseconds, near the wall clock."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    def _write(self, topic: str, msgtype: str, cdr: bytes | memoryview, log_time: int) -> None:
        if self._closed:
            raise RecorderError("the recorder is closed")
        if self._writer is None:
            self._open_bag()
        key = (topic, msgtype)
        conn = self._connections.get(key)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[key] = conn
        self._writer.write(conn, log_time, cdr)
        self._pending = True

    def _open_bag(self) -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import StoragePlugin
        from rosbags.rosbag2.errors import WriterError

        path = self.out_dir / f"{BAG_PREFIX}_{len(self.bags):04d}"
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        try:
            writer = Writer(path, version=BAG_VERSION[self.distro], storage_plugin=plugin)
            writer.set_custom_data("rlcg.format", FORMAT_TAG)
            writer.set_custom_data("rlcg.distro", self.distro)
            writer.open()
        except WriterError as exc:
            raise BagExistsError(f"{path} exists already: rlcg never overwrites a bag ({exc})") from None
        _check_storage_api(writer.storage)
        if self.storage == "mcap":
            _checksum_chunks(writer.storage)
        self._writer = writer
        self._connections = {}
        self._episodes_in_bag = 0
        self.bags.append(path)

    def _flush(self) -> None:
        """Put everything written so far into the storage file (the rosbags writer keeps the current
        MCAP chunk and sqlite3 transaction in memory until it closes them)."""
        storage = self._writer.storage
        if self.storage == "mcap":
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            if self.fsync:
                os.fsync(storage.bio.fileno())
        else:
            storage.conn.commit()  # sqlite3 syncs the file on commit (synchronous=FULL)

    def _bag_bytes(self) -> int:
        return self._writer.storage.path.stat().st_size

    def _write_metadata(self) -> None:
        """A metadata.yaml describing the bag as of the last complete episode; the writer's ``close``
        replaces it with the final one. Without it a killed recording would be a directory that ROS
        tools do not recognise as a bag at all."""
        w = self._writer
        from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9

        dump_qos = dump_qos_v9 if w.version >= 9 else dump_qos_v8
        count = sum(w.counts.values())
        duration = max(0, w.max_timestamp - w.min_timestamp)
        name = w.storage.path.name
        info = {
            "version": w.version,
            "storage_identifier": self.storage,
            "relative_file_paths": [name],
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": w.min_timestamp},
            "message_count": count,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": c.topic,
                        "type": c.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": dump_qos(c.ext.offered_qos_profiles),
                        "type_description_hash": c.digest,
                    },
                    "message_count": w.counts[c.id],
                }
                for c in w.connections
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": name,
                    "starting_time": {"nanoseconds_since_epoch": w.min_timestamp},
                    "duration": {"nanoseconds": duration},
                    "message_count": count,
                }
            ],
            "custom_data": {**w.custom_data, "rlcg.episodes": str(self._episodes_in_bag)},
            "ros_distro": "rosbags",
        }
        w.set_custom_data("rlcg.episodes", str(self._episodes_in_bag))
        tmp = w.metapath.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False), encoding="utf-8")
        tmp.replace(w.metapath)


def _refuse_existing(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise BagExistsError(f"{out_dir} exists and is not a directory")
    if is_bag(out_dir):
        raise BagExistsError(f"{out_dir} is a bag already: rlcg never overwrites a bag; choose a new directory")
    from rlcg.data.store import is_dataset

    if is_dataset(out_dir):
        raise BagExistsError(f"{out_dir} is an ingested dataset: record bags into a directory of their own")
    bags = find_bags(out_dir)
    if bags:
        names = ", ".join(str(b) for b in bags[:3]) + (" ..." if len(bags) > 3 else "")
        raise BagExistsError(
            f"{out_dir} holds {len(bags)} bag(s) already ({names}): rlcg never overwrites a bag; choose a new directory"
        )


# A chunk record: opcode (1 byte), record length (8), message start and end time (8 + 8), uncompressed
# size (8), then the CRC-32 of the uncompressed records (4; 0 means none).
CHUNK_CRC_OFFSET = 1 + 8 + 8 + 8 + 8


def _checksum_chunks(storage) -> None:
    """Give every MCAP chunk the CRC-32 of its records, as `ros2 bag record` does. The rosbags writer
    leaves it 0 (none), so a byte flipped on disk inside an image would be ingested without a word;
    with the CRC, readers (rlcg's, rosbags', mcap's) report the chunk as corrupt."""
    close_chunk = storage.close_chunk

    def close_chunk_with_crc() -> None:
        crc = zlib.crc32(storage.chunk.bio.getvalue())
        start = storage.bio.tell()
        close_chunk()
        end = storage.bio.tell()
        storage.bio.seek(start + CHUNK_CRC_OFFSET)
        storage.bio.write(struct.pack("<I", crc))
        storage.bio.seek(end)

    storage.close_chunk = close_chunk_with_crc  # the writer closes chunks itself too (at 1 MiB, on close)


def _check_storage_api(storage) -> None:
    """The recorder reaches into the rosbags storage writers to flush per episode; fail clearly if a
    rosbags release changed them."""
    needed = ("chunk", "close_chunk", "bio", "path") if hasattr(storage, "close_chunk") else ("conn", "path")
    missing = [name for name in needed if not hasattr(storage, name)]
    if missing:
        raise RecorderError(
            f"this rosbags version's {type(storage).__name__} lacks {', '.join(missing)}; "
            "rlcg's per-episode flushing needs rosbags 0.11.8 to 0.11.x"
        )
