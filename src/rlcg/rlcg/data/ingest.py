"""Bags -> an ingested transition dataset (``rlcg data ingest``).

One pass over each bag: episodes are decoded and checked (``rlcg.data.decode``), and their transitions
streamed into memory-mappable shard files; memory use stays at one episode however large the bags.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rlcg.data.bags import Problems, find_bags, storage_files
from rlcg.data.decode import EpisodeStream
from rlcg.data.store import (
    DEFAULT_SHARD_BYTES,
    DatasetError,
    EpisodeRecord,
    ShardWriter,
    is_dataset,
    new_index,
    next_shard_name,
    read_index,
    verify_dataset,
    write_index,
)
from rlcg.errors import RlcgError
from rlcg.interrupts import Interrupted, ctrl_c_deferred

log = logging.getLogger("rlcg.data")


class DatasetExistsError(RlcgError, FileExistsError):
    """The output of an ingest exists and appending was not asked for."""


class NothingIngestedError(RlcgError):
    """No episode of the given bags could be used."""


@dataclass
class IngestReport:
    out: Path
    bags: int = 0
    skipped_bags: int = 0  # already in the dataset
    episodes: int = 0
    duplicate_episodes: int = 0  # already in the dataset, or read twice in this run
    transitions: int = 0
    rejected_episodes: int = 0
    bag_bytes: int = 0
    shards: list[str] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)

    def as_dict(self) -> dict:
        return {
            "out": str(self.out),
            "bags": self.bags,
            "skipped_bags": self.skipped_bags,
            "episodes": self.episodes,
            "duplicate_episodes": self.duplicate_episodes,
            "transitions": self.transitions,
            "rejected_episodes": self.rejected_episodes,
            "bag_bytes": self.bag_bytes,
            "shards": self.shards,
            "problems": self.problems.counts,
        }


# A bag read with no other problem than these gave every episode it holds: another copy of it is
# skipped unread. After any other problem (a damaged chunk, a cut file, a bad episode) the copy is
# read, and its episodes that the dataset lacks are taken: an intact copy can make up what a damaged
# one lost.
LOSSLESS_PROBLEMS = frozenset({"converted_encoding", "duplicate_timestamp"})


def read_whole(source: dict) -> bool:
    """Whether the bag of a dataset ``source`` record gave all its episodes when it was ingested."""
    return not source.get("rejected") and set(source.get("problems", {})) <= LOSSLESS_PROBLEMS


def episode_key(episode_id: str, policy: str, start_ns: int, end_ns: int) -> tuple[str, str, int, int]:
    """What makes two episodes one recording: copies and conversions of a bag keep the id, policy and
    log times; separate recordings differ in their log times (the recorder's clock)."""
    return (str(episode_id), str(policy), int(start_ns), int(end_ns))


def dataset_episode_keys(records: list[dict]) -> dict[tuple[str, str, int, int], str]:
    """The episode keys of an ingested dataset's episode records, each with the bag it came from."""
    return {episode_key(r["episode_id"], r["policy"], r["start_ns"], r["end_ns"]): r["bag"] for r in records}


def bag_fingerprint(bag: Path, files: list[Path] | None = None) -> str:
    """Identifies a bag's content cheaply: names, sizes, and the first and last 64 KiB of its files."""
    h = hashlib.sha256()
    for f in files if files is not None else storage_files(bag):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 16))
            if size > 1 << 16:
                fh.seek(max(1 << 16, size - (1 << 16)))
                h.update(fh.read())
    return h.hexdigest()[:32]


def ingest(
    bag_paths: Sequence[str | Path],
    out: str | Path,
    append: bool = False,
    image_size: tuple[int, int] | None = None,
    progress: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    fsync: bool = False,
    echo_problems: bool = False,
) -> IngestReport:
    """Ingest the bags found at ``bag_paths`` into the dataset ``out`` (created, or appended to when
    ``append``). ``image_size`` (H, W) fixes the image size of a new dataset; otherwise the first
    accepted episode sets it."""
    from tqdm import tqdm

    out = Path(out)
    report = IngestReport(out=out, problems=Problems(echo=echo_problems))
    bags: list[Path] = []
    for p in bag_paths:
        for bag in find_bags(p):
            if bag.resolve() not in {b.resolve() for b in bags}:
                bags.append(bag)
    if not bags:
        raise RlcgError(f"no rosbag2 bags found in {', '.join(str(p) for p in bag_paths)}")

    if is_dataset(out):
        if not append:
            raise DatasetExistsError(f"{out} is a dataset already; pass --append to add the bags to it")
        index = read_index(out)
        if "translation" in index:  # its images are G(x) or F(y); raw camera images would mix in unnoticed
            raise DatasetError(
                f"{out} holds images translated by {index['translation']['generator']} (rlcg translate); "
                "ingest the bags into a dataset of their own and translate that"
            )
        created = False
        if image_size is not None and index["image_size"] and tuple(index["image_size"]) != tuple(image_size):
            raise DatasetError(
                f"{out} holds {index['image_size'][0]}x{index['image_size'][1]} images, not {image_size}"
            )
        try:  # headers and sizes only: new shards must not be added to a dataset that cannot be read
            records = verify_dataset(out, index)
        except DatasetError as exc:
            raise DatasetError(
                f"{out} is damaged, nothing was appended ({exc}); rebuild it from its bags into a new directory"
            ) from exc
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DatasetExistsError(f"{out} exists and is not an rlcg dataset; choose a new directory")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        index = new_index(image_size)
        records = []

    known = {s["fingerprint"]: s for s in index["sources"]}
    seen = dataset_episode_keys(records)
    size = tuple(index["image_size"]) if index["image_size"] else None
    domains: list[str] = list(index["domains"])
    episodes_total = int(index["episodes"])
    transitions_total = int(index["transitions"])
    new_shards: list[dict] = []
    new_sources: list[dict] = []
    writer: ShardWriter | None = None
    committed = False

    files = {bag: storage_files(bag, report.problems) for bag in bags}
    total = sum(f.stat().st_size for fs in files.values() for f in fs)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=not progress, dynamic_ncols=True)
    try:
        for bag in bags:
            if not files[bag]:  # nothing to read, and nothing to fingerprint or record as a source
                if not any(Path(p.file).parent == bag for p in report.problems.items):
                    report.problems.add("unreadable", bag, "", "the bag has no .mcap or .db3 storage file")
                report.bags += 1
                continue
            fingerprint = bag_fingerprint(bag, files[bag])
            if fingerprint in known and read_whole(known[fingerprint]):
                report.skipped_bags += 1
                report.problems.add(
                    "already_ingested",
                    bag,
                    "",
                    f"skipped: the same bag is in the dataset ({known[fingerprint]['bag']})",
                )
                bar.update(sum(f.stat().st_size for f in files[bag]))
                continue
            before = len(report.problems)
            stream = EpisodeStream(bag, report.problems, image_size=size, files=files[bag])
            source = {"bag": str(bag), "fingerprint": fingerprint, "episodes": 0, "transitions": 0, "rejected": 0}
            done_bytes, duplicates = 0, 0
            for ep in stream:
                size = stream.image_size
                key = episode_key(ep.episode_id, ep.policy, ep.start_ns, ep.end_ns)
                if key in seen:
                    duplicates += 1
                    if fingerprint not in known:  # a copy of the same bag is summed up in one line below
                        report.problems.add(
                            "duplicate_episode", bag, ep.episode_id, f"skipped: the same recording is in {seen[key]}"
                        )
                    continue
                seen[key] = str(bag)
                if writer is None:
                    writer = ShardWriter(
                        out, next_shard_name(out, index | {"shards": index["shards"] + new_shards}), size, fsync
                    )
                if ep.domain not in domains:
                    domains.append(ep.domain)
                record = EpisodeRecord(
                    index=episodes_total,
                    episode_id=ep.episode_id,
                    domain=ep.domain,
                    policy=ep.policy,
                    seed=ep.seed,
                    bin_index=ep.bin_index,
                    steps=ep.num_steps,
                    success=ep.success,
                    first=transitions_total,
                    bag=str(bag),
                    start_ns=ep.start_ns,
                    end_ns=ep.end_ns,
                )
                writer.append(ep, episodes_total, domains.index(ep.domain), record)
                episodes_total += 1
                transitions_total += ep.num_steps
                source["episodes"] += 1
                source["transitions"] += ep.num_steps
                if writer.bytes + writer._pending_bytes >= shard_bytes:
                    new_shards.append(writer.close())
                    writer = None
                bar.update(stream.reader.bytes_read - done_bytes)
                done_bytes = stream.reader.bytes_read
            bar.update(stream.reader.total_bytes - done_bytes)
            report.duplicate_episodes += duplicates
            if fingerprint in known:
                report.problems.add(
                    "already_ingested",
                    bag,
                    "",
                    f"read again, as {known[fingerprint]['bag']} lost episodes when it was ingested: "
                    f"{source['episodes']} added, {duplicates} in the dataset already",
                )
            report.rejected_episodes += stream.rejected
            if duplicates and not source["episodes"]:  # a copy that adds nothing is not a source
                report.skipped_bags += 1
                continue
            source["rejected"] = stream.rejected
            source["problems"] = Problems(report.problems.items[before:]).counts
            source["problems"].pop("duplicate_episode", None)  # not a loss: the episodes are in the dataset
            new_sources.append(source)
            known[fingerprint] = source
            report.bags += 1
            report.bag_bytes += stream.reader.total_bytes
            report.episodes += source["episodes"]
            report.transitions += source["transitions"]
        if writer is not None:
            new_shards.append(writer.close())
            writer = None
        if report.episodes == 0 and report.skipped_bags < len(bags):
            raise NothingIngestedError(
                f"no usable episode in {len(bags) - report.skipped_bags} bag(s) ({report.problems.summary()}); "
                f"{out} is unchanged"
            )
        with ctrl_c_deferred():  # replacing the index is the commit: it runs whole, then Ctrl-C counts
            index.update(
                image_size=list(size) if size else None,
                transitions=transitions_total,
                episodes=episodes_total,
                domains=domains,
                shards=index["shards"] + new_shards,
                sources=index["sources"] + new_sources,
            )
            write_index(out, index, fsync)
            committed = True
    except BaseException:  # a full disk, a kill, a bug: leave ``out`` as it was before this run
        if committed:  # Ctrl-C during the commit, raised once it was done
            raise Interrupted(f"after the ingest had finished: {out} holds the new episodes") from None
        if writer is not None:
            writer.abort()
        for shard in new_shards:  # renamed into place, but not in the index yet
            shutil.rmtree(out / shard["name"], ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        bar.close()
    report.shards = [s["name"] for s in new_shards]
    return report
