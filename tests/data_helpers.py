"""Helpers for the data tests: real episodes from the simulator, and bags crafted message by message.

Bags are written with the rosbags writer exactly as the recorder writes them; ``edit`` hooks change
the message list of chosen episodes (drop, duplicate, alter a field) to make the bad inputs the
ingest must survive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from rlcg.data.encode import OutMessage, episode_messages
from rlcg.data.episode import Episode, MemorySink
from rlcg.data.types import typestore

Edit = Callable[[int, list[tuple[OutMessage, int]]], list[tuple[OutMessage, int]]]


@cache
def _episodes(n: int, attempts: int, base_seed: int, image_size: int) -> tuple[Episode, ...]:
    from rlcg.rollout import RolloutSpec, rollout

    sink = MemorySink()
    spec = RolloutSpec(policy="random", episodes=n, attempts=attempts, base_seed=base_seed, image_size=image_size)
    rollout(spec, sink, progress=False)
    return tuple(sink.episodes)


def real_episodes(n: int = 4, attempts: int = 1, base_seed: int = 7, image_size: int = 64) -> list[Episode]:
    """``n`` episodes of the random policy in the simulator (cached per arguments; ~0.1 s each)."""
    return list(_episodes(n, attempts, base_seed, image_size))


def clock(start: int = 1_700_000_000_000_000_000, step: int = 1000) -> Callable[[], int]:
    counter = itertools.count()
    return lambda: start + step * next(counter)


def write_bag(
    path: Path,
    episodes: list[Episode],
    edit: Edit | None = None,
    storage: str = "mcap",
    distro: str = "jazzy",
    zstd_chunks: bool = False,
    start_ns: int | None = None,
) -> Path:
    """A bag at ``path`` holding ``episodes`` as the recorder lays them out, after ``edit`` (a message
    given as bytes is written as it is); log times count up from ``start_ns`` (default: clock's)."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import StoragePlugin

    store = typestore(distro)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    tick = clock() if start_ns is None else clock(start_ns)
    writer = Writer(path, version=9 if distro == "jazzy" else 8, storage_plugin=plugin)
    if zstd_chunks:  # as `ros2 bag record --compression-mode storage` (MCAP only)
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for i, ep in enumerate(episodes):
            messages = list(episode_messages(ep, tick, distro))
            if edit is not None:
                messages = edit(i, messages)
            for out, log_time in messages:
                key = (out.topic, out.msgtype)
                if key not in connections:
                    connections[key] = writer.add_connection(out.topic, out.msgtype, typestore=store)
                raw = out.msg if isinstance(out.msg, bytes) else bytes(store.serialize_cdr(out.msg, out.msgtype))
                writer.write(connections[key], log_time, raw)
    return path


def storage_file(bag: Path) -> Path:
    (f,) = [p for p in Path(bag).iterdir() if p.suffix in (".mcap", ".db3")]
    return f


def transitions_of(episodes: list[Episode]) -> dict[str, np.ndarray]:
    """What the dataset of ``episodes`` must hold, in order."""
    steps = [s for ep in episodes for s in ep.steps]
    return {
        "images": np.stack([s.image for s in steps]),
        "next_images": np.stack([s.next_image for s in steps]),
        "actions": np.stack([s.action for s in steps]).astype(np.float32),
        "rewards": np.array([s.reward for s in steps], dtype=np.float32),
        "dones": np.array([s.done for s in steps]),
    }


def chunk_offsets(mcap_file: Path) -> list[tuple[int, int]]:
    """(offset, length) of every chunk record of an MCAP file, read from its record framing."""
    import struct

    data = Path(mcap_file).read_bytes()
    pos, found = 8, []
    while pos + 9 <= len(data):
        op, length = struct.unpack_from("<BQ", data, pos)
        if op == 0x06:
            found.append((pos, 9 + length))
        if op in (0x02, 0x0F):
            break
        pos += 9 + length
    return found


def rewrite_with_chunk_crcs(bag: Path, chunk_size: int = 1) -> Path:
    """Write the MCAP file of ``bag`` again with the ``mcap`` package's writer, as the MCAP C++ writer
    of ``ros2 bag record`` lays it out: uncompressed chunks that each carry the CRC-32 of their
    records (the rosbags writer leaves the chunk CRC 0, which means "not computed"). The default
    ``chunk_size`` of 1 byte closes a chunk after every message. Same messages, channels and log times."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    f = storage_file(bag)
    with f.open("rb") as src:
        reader = make_reader(src)
        profile = reader.get_header().profile
        records = list(reader.iter_messages(log_time_order=False))
    out = f.with_suffix(".crc")
    with out.open("wb") as dst:
        writer = Writer(dst, chunk_size=chunk_size, compression=CompressionType.NONE, enable_crcs=True)
        writer.start(profile=profile, library="rlcg tests")
        schema_ids: dict[int, int] = {}
        channel_ids: dict[int, int] = {}
        for schema, channel, message in records:
            if schema.id not in schema_ids:
                schema_ids[schema.id] = writer.register_schema(schema.name, schema.encoding, schema.data)
            if channel.id not in channel_ids:
                channel_ids[channel.id] = writer.register_channel(
                    channel.topic, channel.message_encoding, schema_ids[schema.id], dict(channel.metadata)
                )
            writer.add_message(
                channel_ids[channel.id], message.log_time, message.data, message.publish_time, message.sequence
            )
        writer.finish()
    out.replace(f)
    return bag
