"""The recorder node's logic: episode topics in (as CDR bytes), complete episodes out to a bag.

An episode starts with its EpisodeInfo message and ends with its GraspOutcome (one ExecuteGrasp
goal and result; the policy node publishes both). Messages of the open episode are held in memory
and handed to ``rlcg.data.recorder.EpisodeRecorder`` only once the episode is complete (its done
outcome, and every step's image, grasp pose and image after), followed by ``end_episode()``, which
makes the bag durable. So a bag only ever holds complete episodes: an episode abandoned half-way (a
new EpisodeInfo first, a crash) is never written, and a crash loses no completed episode.

/tf is recorded once per episode and only the world -> base transform (rlcg.data.topics.TF): the
robot's other transforms come from its URDF. That transform is composed from /tf and /tf_static, as
tf2 would: on the real robot and in Gazebo the base hangs below ``<robot>_floating_link`` on
/tf_static, and no single message links world and base. A moving (non-static) link older than
``max_tf_age_s`` at an episode's start is not recorded: its publisher has stopped, and the pose it
last sent is not the pose of this episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlcg.configio import ConfigError
from rlcg.data import topics
from rlcg.robot import messages
from rlcg.sim.geometry import matrix_from_quat, quat_from_matrix


@dataclass(frozen=True)
class RecorderNodeSettings:
    """Parameters of ``recorder_node`` (config/recorder_node.yaml)."""

    bag_dir: str = "rlcg_bags"  # a new directory; rlcg never writes into an existing bag
    storage: str = "mcap"  # mcap or sqlite3
    distro: str = "jazzy"  # bag and message definitions of this distro (jazzy or humble)
    max_episodes_per_bag: int = 100  # roll over to a new bag after this many episodes (0: never)
    max_bag_megabytes: int = 0  # ... or this size (0: no limit)
    world_frame: str = topics.WORLD_FRAME
    base_frame: str = topics.BASE_FRAME
    max_tf_age_s: float = 5.0  # a moving world -> base link older than this at an episode's start is not recorded

    def validate(self) -> None:
        if self.storage not in ("mcap", "sqlite3"):
            raise ConfigError(f"storage must be mcap or sqlite3, got {self.storage!r}")
        if self.distro not in ("jazzy", "humble"):
            raise ConfigError(f"distro must be jazzy or humble, got {self.distro!r}")
        if self.max_episodes_per_bag < 0 or self.max_bag_megabytes < 0:
            raise ConfigError("max_episodes_per_bag and max_bag_megabytes must not be negative")
        if not self.bag_dir:
            raise ConfigError("bag_dir must name a directory")
        if not 0.0 < self.max_tf_age_s <= 3600.0:  # also refuses NaN
            raise ConfigError(f"max_tf_age_s must be in (0, 3600] s, got {self.max_tf_age_s}")


# Topics the node subscribes to, and their ROS types (/tf_static only to find the world -> base chain).
RECORDED_TOPICS: dict[str, str] = {**topics.TOPIC_TYPES, topics.TF_STATIC: "tf2_msgs/msg/TFMessage"}


@dataclass
class _Buffered:
    topic: str
    msgtype: str
    cdr: bytes
    stamp_ns: int  # when it arrived
    header_ns: int = 0  # its header stamp: the step it belongs to


@dataclass
class RecorderStats:
    episodes_written: int = 0
    episodes_dropped: int = 0  # started but never complete (replaced by a newer one, or the node stopped)
    messages_ignored: int = 0  # episode topics of no open episode (late, stray, duplicated)
    messages_bad: int = 0  # bytes that do not decode as their topic's type
    last_episode_id: str = ""
    notes: list[str] = field(default_factory=list)


# What a step needs besides its outcome, in the order it is written (rlcg.data.decode's order).
_STEP_NEEDS = (topics.IMAGE, topics.GRASP_POSE, topics.NEXT_IMAGE)
MAX_EARLY_MESSAGES = 32  # held back for an episode whose EpisodeInfo has not arrived yet


@dataclass
class _Episode:
    info: _Buffered
    episode_id: str
    world_base: _Buffered | None
    items: dict[tuple[str, int], _Buffered] = field(default_factory=dict)  # (topic, header stamp) -> message
    done_at: int | None = None  # header stamp of the step whose outcome ended the episode
    success: bool = False

    def steps(self) -> list[tuple[int, dict[str, _Buffered]]]:
        """Each step (its outcome's header stamp) with the messages found for it. The image and grasp
        pose carry the step's stamp; the image after carries it too (the policy node) or its own,
        later one (docs/data-format.md): the first to arrive before the next step's stamp counts."""
        stamps = sorted(stamp for topic, stamp in self.items if topic == topics.OUTCOME)
        after = sorted(
            (m for (topic, _), m in self.items.items() if topic == topics.NEXT_IMAGE), key=lambda m: m.stamp_ns
        )
        out = []
        for k, stamp in enumerate(stamps):
            until = stamps[k + 1] if k + 1 < len(stamps) else None
            found = {
                t: self.items[(t, stamp)]
                for t in (topics.IMAGE, topics.GRASP_POSE, topics.OUTCOME)
                if (t, stamp) in self.items
            }
            image_after = [m for m in after if m.header_ns >= stamp and (until is None or m.header_ns < until)]
            if image_after:
                found[topics.NEXT_IMAGE] = image_after[0]
            out.append((stamp, found))
        return out

    def missing(self) -> list[str]:
        return [
            f"{topic} of the step at {stamp} ns"
            for stamp, found in self.steps()
            for topic in _STEP_NEEDS
            if topic not in found
        ]

    def in_bag_order(self) -> list[_Buffered]:
        out = [self.info] + ([self.world_base] if self.world_base is not None else [])
        out += [m for (topic, _), m in sorted(self.items.items()) if topic == topics.CAMERA_INFO][:1]
        for _, found in self.steps():
            out += [found[topic] for topic in (*_STEP_NEEDS, topics.OUTCOME)]
        return out


class RecorderCore:
    """Episodes from the policy node's topics. ROS orders messages within a topic, not across
    topics, so a step's image after the grasp may arrive after its outcome, and an image before its
    EpisodeInfo: messages are matched to their episode and step by their header stamps (a step's
    messages share one, the EpisodeInfo's is its first step's), an episode is written once every
    step has its image, grasp pose, image after and outcome, in the order the bag format wants,
    and log times are made to increase (a simulated clock may stand still or go back)."""

    def __init__(self, recorder: Any, settings: RecorderNodeSettings):
        self.recorder = recorder
        self.settings = settings
        self.stats = RecorderStats()
        self._episode: _Episode | None = None
        self._early: list[_Buffered] = []  # messages that came before their EpisodeInfo
        self._world_base: _Buffered | None = None  # latest world -> base transform, composed
        self._world_base_age_from = 0  # stamp of its oldest moving link (0: all static)
        self._links: dict[str, tuple[str, Any, bool]] = {}  # child -> (parent, transform, static)
        self._last_log_ns = 0

    @classmethod
    def create(cls, settings: RecorderNodeSettings) -> RecorderCore:
        from rlcg.data.recorder import EpisodeRecorder

        recorder = EpisodeRecorder(
            settings.bag_dir,
            storage=settings.storage,
            distro=settings.distro,
            max_episodes_per_bag=settings.max_episodes_per_bag or None,
            max_bag_bytes=settings.max_bag_megabytes * 1_000_000 or None,
        )
        return cls(recorder, settings)

    @property
    def recording(self) -> bool:
        return self._episode is not None

    def on_message(self, topic: str, cdr: bytes, stamp_ns: int) -> str | None:
        """Take one message; returns a line for the log when an episode was written or dropped, or a
        message was refused."""
        if topic not in RECORDED_TOPICS:
            raise ValueError(f"{topic} is not an rlcg episode topic")
        try:  # before any state changes: bytes that do not decode touch nothing
            msg = messages.deserialize(cdr, RECORDED_TOPICS[topic], self.settings.distro)
        except messages.MessageError as exc:
            self.stats.messages_bad += 1
            return f"ignored a message on {topic} that does not decode: {exc}"
        header = msg.header if topic not in (topics.TF, topics.TF_STATIC) else None
        item = _Buffered(
            topic, RECORDED_TOPICS[topic], bytes(cdr), int(stamp_ns), messages.stamp_ns(header) if header else 0
        )
        if topic in (topics.TF, topics.TF_STATIC):
            self._on_tf(msg, item, static=topic == topics.TF_STATIC)
            return None
        if topic == topics.EPISODE:
            return self._start(msg, item)
        episode = self._episode
        if topic == topics.OUTCOME and episode is not None and str(msg.episode_id) != episode.episode_id:
            self.stats.messages_ignored += 1  # late, repeated or another publisher's: the open episode goes on
            return f"ignored an outcome of episode {msg.episode_id} while recording {episode.episode_id}"
        if episode is None or item.header_ns < episode.info.header_ns:
            self._hold_early(item)
            return None
        return self._add(episode, item, msg)

    def _on_tf(self, msg: Any, item: _Buffered, static: bool) -> None:
        s = self.settings
        updated = set()
        for t in msg.transforms:
            parent, child = str(t.header.frame_id).lstrip("/"), str(t.child_frame_id).lstrip("/")
            if parent and child and parent != child:
                self._links[child] = (parent, t, static)
                updated.add(child)
        chain = self._chain(s.world_frame, s.base_frame)
        on_chain = {str(t.child_frame_id).lstrip("/") for _p, t, _s in chain or []}
        if chain is None or (self._world_base is not None and not updated & on_chain):
            return  # /tf carries every joint of the arm: most messages leave the base where it was
        position, rotation = np.zeros(3), np.eye(3)
        for _parent, t, _static in chain:  # world -> ... -> base: compose from the world down
            tr, q = t.transform.translation, t.transform.rotation
            position = position + rotation @ np.array([tr.x, tr.y, tr.z], dtype=np.float64)
            rotation = rotation @ matrix_from_quat((q.x, q.y, q.z, q.w))
        moving = [messages.stamp_ns(t.header) for _p, t, is_static in chain if not is_static]
        stamp = max(moving) if moving else messages.stamp_ns(chain[-1][1].header)
        composed = messages.transform_msg(
            s.world_frame, s.base_frame, position, quat_from_matrix(rotation), stamp, s.distro
        )
        cdr = messages.serialize(messages.tf_message([composed], s.distro), "tf2_msgs/msg/TFMessage", s.distro)
        self._world_base = _Buffered(topics.TF, "tf2_msgs/msg/TFMessage", cdr, item.stamp_ns)
        self._world_base_age_from = min(moving) if moving else 0

    def _chain(self, root: str, frame: str) -> list[tuple[str, Any, bool]] | None:
        """The links from ``root`` down to ``frame`` (parent first), or None if they do not connect."""
        chain = []
        while frame != root:
            if frame not in self._links or len(chain) > len(self._links):  # unknown, or a cycle
                return None
            link = self._links[frame]
            chain.append(link)
            frame = link[0]
        return chain[::-1]

    def _hold_early(self, item: _Buffered) -> None:
        self._early.append(item)
        if len(self._early) > MAX_EARLY_MESSAGES:
            self._early.pop(0)
            self.stats.messages_ignored += 1

    def _start(self, info: Any, item: _Buffered) -> str | None:
        note = None
        if self._episode is not None:
            note = self._drop(self._episode, "a new episode started before it was complete")
        world_base = None
        age = (item.header_ns - self._world_base_age_from) / 1e9 if self._world_base_age_from else 0.0
        if self._world_base is not None and age > self.settings.max_tf_age_s:
            s = self.settings
            stale = f"base pose not recorded: the {s.world_frame} -> {s.base_frame} transform is {age:.1f} s old"
            note = stale if note is None else f"{note}; {stale}"
        elif self._world_base is not None:
            world_base = _Buffered(
                self._world_base.topic, self._world_base.msgtype, self._world_base.cdr, item.stamp_ns
            )
        episode = self._episode = _Episode(item, str(info.episode_id), world_base)
        early, self._early = self._early, []
        for i, held in enumerate(early):  # what came before this EpisodeInfo and belongs to it
            if held.header_ns < item.header_ns:
                self.stats.messages_ignored += 1
                continue
            msg = messages.deserialize(held.cdr, held.msgtype, self.settings.distro)
            if held.topic == topics.OUTCOME and str(msg.episode_id) != episode.episode_id:
                self.stats.messages_ignored += 1
                continue
            written = self._add(episode, held, msg)
            if written is not None:  # complete already: the rest waits for the next EpisodeInfo
                self._early += early[i + 1 :]
                return written if note is None else f"{note}; {written}"
        return note

    def _add(self, episode: _Episode, item: _Buffered, msg: Any) -> str | None:
        key = (item.topic, item.header_ns)
        if key in episode.items:  # a repeated message of this step: the first one counts
            self.stats.messages_ignored += 1
            return None
        episode.items[key] = item
        if item.topic == topics.OUTCOME and msg.done:
            episode.done_at, episode.success = item.header_ns, bool(msg.success)
        if episode.done_at is None or episode.missing():
            return None  # a step is still missing a message: it may yet arrive
        self._write(episode)
        return f"recorded episode {episode.episode_id} ({'success' if episode.success else 'failure'})"

    def _write(self, episode: _Episode) -> None:
        written = episode.in_bag_order()
        for m in written:
            # log times increase through the recording even if the clock stood still or went back
            self._last_log_ns = max(m.stamp_ns, self._last_log_ns + 1)
            self.recorder.write_raw(m.topic, m.msgtype, m.cdr, self._last_log_ns)
        self.recorder.end_episode()
        self._close_episode(episode, written)
        self.stats.episodes_written += 1
        self.stats.last_episode_id = episode.episode_id

    def _close_episode(self, episode: _Episode, kept: list[_Buffered]) -> None:
        """The episode is over; messages stamped after its last step (the next episode's, come before
        its EpisodeInfo) are held for that episode."""
        self._episode = None
        last = max([episode.info.header_ns, *(stamp for topic, stamp in episode.items if topic == topics.OUTCOME)])
        kept_ids = {id(m) for m in kept}
        later = [m for m in episode.items.values() if id(m) not in kept_ids and m.header_ns > last]
        self._early = sorted(later, key=lambda m: m.stamp_ns) + self._early

    def _drop(self, episode: _Episode, why: str) -> str:
        self.stats.episodes_dropped += 1
        self._close_episode(episode, [])
        missing = episode.missing() if episode.done_at is not None else ["its outcome"]
        return f"dropped episode {episode.episode_id} ({why}; missing {', '.join(missing)})"

    def close(self) -> str | None:
        """Finish the bag; an episode still incomplete is dropped (returned: the line for the log)."""
        note = self._drop(self._episode, "the recorder stopped") if self._episode is not None else None
        self.stats.messages_ignored += len(self._early)  # of an episode whose EpisodeInfo never came
        self._early = []
        self.recorder.close()
        return note
