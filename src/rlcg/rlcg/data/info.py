"""Summaries of bags and datasets (``rlcg data info``)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rlcg.data.bags import METADATA, Problems, find_bags, read_bag_metadata
from rlcg.data.decode import EpisodeStream
from rlcg.data.store import is_dataset, read_index
from rlcg.errors import RlcgError


def _rate(successes: int, episodes: int) -> float | None:
    return successes / episodes if episodes else None


def nothing_read(report: dict) -> str | None:
    """For bags of which not one episode could be read, and problems say why: the error to exit with."""
    if report["kind"] != "bags" or report["episodes"] or not report["problems"]:
        return None
    return (
        f"nothing could be read from {report['path']}: no complete episode in {len(report['bags'])} bag(s) "
        f"({', '.join(f'{n} {k}' for k, n in sorted(report['problems'].items()))})"
    )


def bag_info(path: str | Path) -> dict:
    """Episodes, success rate, domains, image sizes, duration and per-topic counts of the bags at ``path``."""
    problems = Problems()
    bags = []
    topics: dict[str, dict] = {}
    domains: Counter[str] = Counter()
    policies: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    episodes = successes = attempts = rejected = 0
    start = end = None
    found = find_bags(path)
    if not found:  # a mistyped directory must not read as a healthy, empty recording
        raise RlcgError(f"no rosbag2 bags found in {path}")
    for bag in found:
        meta, why = read_bag_metadata(bag)
        if why is not None:
            problems.add("corrupt", Path(bag) / METADATA, "", why)
        stream = EpisodeStream(bag, problems, enforce_size=False, count_topics=True)
        n = 0
        for ep in stream:
            n += 1
            successes += int(ep.success)
            attempts += ep.num_steps
            domains[ep.domain] += 1
            policies[ep.policy] += 1
            sizes["{}x{}".format(*ep.image_size)] += 1
        reader = stream.reader
        episodes += n
        rejected += stream.rejected
        for topic, count in reader.topic_counts.items():
            entry = topics.setdefault(topic, {"type": reader.topic_types[topic], "count": 0})
            entry["count"] += count
        if reader.start_ns is not None:
            start = reader.start_ns if start is None else min(start, reader.start_ns)
            end = reader.end_ns if end is None else max(end, reader.end_ns)
        custom = (meta or {}).get("custom_data") or {}
        bags.append(
            {
                "path": str(bag),
                "storage": sorted({f.suffix.lstrip(".") for f in reader.files}),
                "bytes": reader.total_bytes,
                "episodes": n,
                "rejected": stream.rejected,
                "distro": custom.get("rlcg.distro", ""),
            }
        )
    return {
        "path": str(path),
        "kind": "bags",
        "bags": bags,
        "bytes": sum(b["bytes"] for b in bags),
        "episodes": episodes,
        "rejected_episodes": rejected,
        "attempts": attempts,
        "successes": successes,
        "success_rate": _rate(successes, episodes),
        "domains": dict(domains),
        "policies": dict(policies),
        "image_sizes": dict(sizes),
        "start_ns": start,
        "duration_s": (end - start) / 1e9 if start is not None else 0.0,
        "topics": dict(sorted(topics.items())),
        "problems": problems.counts,
        "problem_list": [str(p) for p in problems.items],
    }


def dataset_info(path: str | Path) -> dict:
    from rlcg.data.dataset import TransitionDataset

    index = read_index(Path(path))
    ds = TransitionDataset.open(path)
    eps = ds.episodes
    successes = sum(int(e["success"]) for e in eps)
    domains = Counter(e["domain"] for e in eps)
    start = min((e["start_ns"] for e in eps), default=None)
    end = max((e["end_ns"] for e in eps), default=None)
    nbytes = sum(f.stat().st_size for f in Path(path).glob("shard_*/*.npy"))
    return {
        "path": str(path),
        "kind": "dataset",
        "transitions": len(ds),
        "episodes": len(eps),
        "successes": successes,
        "success_rate": _rate(successes, len(eps)),
        "domains": dict(domains),
        "policies": dict(Counter(e["policy"] for e in eps)),
        "image_sizes": {"{}x{}".format(*ds.image_size): len(eps)},
        "reward_mean": float(ds.rewards[:].mean()) if len(ds) else None,
        "start_ns": start,
        "duration_s": (end - start) / 1e9 if start is not None else 0.0,
        "shards": len(index["shards"]),
        "bytes": nbytes,
        "sources": index["sources"],
        "created": index.get("created"),
        "updated": index.get("updated"),
    }


def info(path: str | Path) -> dict:
    return dataset_info(path) if is_dataset(path) else bag_info(path)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_info(d: dict) -> str:
    lines = []
    rate = "n/a" if d["success_rate"] is None else f"{d['success_rate']:.1%}"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["start_ns"] / 1e9)) if d["start_ns"] else "-"

    def counted(c: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "-"

    if d["kind"] == "bags":
        lines.append(f"{d['path']}: {len(d['bags'])} bag(s), {_human_bytes(d['bytes'])}")
        for b in d["bags"][:20]:
            distro = f", {b['distro']}" if b["distro"] else ""
            storage = "+".join(b["storage"])
            lines.append(
                f"  {b['path']} ({storage}{distro}, {_human_bytes(b['bytes'])}): {b['episodes']} episodes"
                + (f", {b['rejected']} skipped" if b["rejected"] else "")
            )
        if len(d["bags"]) > 20:
            lines.append(f"  ... and {len(d['bags']) - 20} more")
        lines.append(
            f"episodes:     {d['episodes']} complete ({d['attempts']} grasp attempts), {d['rejected_episodes']} skipped"
        )
    else:
        lines.append(f"{d['path']}: rlcg dataset, {d['shards']} shard(s), {_human_bytes(d['bytes'])}")
        lines.append(f"episodes:     {d['episodes']} ({d['transitions']} transitions)")
        lines.append(f"sources:      {len(d['sources'])} bag(s)")
    lines.append(f"success rate: {rate} ({d['successes']} of {d['episodes']})")
    lines.append(f"domains:      {counted(d['domains'])}")
    lines.append(f"policies:     {counted(d['policies'])}")
    lines.append(f"image sizes:  {counted(d['image_sizes'])}")
    lines.append(f"duration:     {d['duration_s']:.1f} s from {when}")
    if d["kind"] == "bags":
        lines.append("topics:")
        width = max((len(t) for t in d["topics"]), default=0)
        for topic, t in d["topics"].items():
            lines.append(f"  {topic:<{width}}  {t['count']:>8}  {t['type']}")
        lines.append(f"problems:     {counted(d['problems']) if d['problems'] else 'none'}")
        for p in d["problem_list"][:20]:
            lines.append(f"  {p}")
        if len(d["problem_list"]) > 20:
            lines.append(f"  ... and {len(d['problem_list']) - 20} more")
    return "\n".join(lines)
