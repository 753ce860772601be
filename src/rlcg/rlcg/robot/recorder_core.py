"""The recorder node's logic: episode topics in (as CDR bytes), complete episodes out to a bag.

An episode starts with its EpisodeInfo message and ends with its GraspOutcome (one ExecuteGrasp
goal and result; the policy node publishes both). Messages of the open episode are held in memory
and handed to ``rlcg.data.recorder.EpisodeRecorder`` only when the outcome arrives, followed by
``end_episode()``, which makes the bag durable. So a bag only ever holds complete episodes: an
episode abandoned half-way (a new EpisodeInfo before the outcome, a crash) is never written, and a
crash loses no completed episode.

/tf is recorded once per episode and only the world -> base transform (rlcg.data.topics.TF): the
robot's other transforms come from its URDF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlcg.configio import ConfigError
from rlcg.data import topics
from rlcg.robot import messages


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

    def validate(self) -> None:
        if self.storage not in ("mcap", "sqlite3"):
            raise ConfigError(f"storage must be mcap or sqlite3, got {self.storage!r}")
        if self.distro not in ("jazzy", "humble"):
            raise ConfigError(f"distro must be jazzy or humble, got {self.distro!r}")
        if self.max_episodes_per_bag < 0 or self.max_bag_megabytes < 0:
            raise ConfigError("max_episodes_per_bag and max_bag_megabytes must not be negative")
        if not self.bag_dir:
            raise ConfigError("bag_dir must name a directory")


# Topics the node subscribes to, and their ROS types.
RECORDED_TOPICS: dict[str, str] = dict(topics.TOPIC_TYPES)


@dataclass
class _Buffered:
    topic: str
    msgtype: str
    cdr: bytes
    stamp_ns: int


@dataclass
class RecorderStats:
    episodes_written: int = 0
    episodes_dropped: int = 0  # started but never finished (replaced by a newer one)
    messages_ignored: int = 0  # episode topics outside an episode
    last_episode_id: str = ""
    notes: list[str] = field(default_factory=list)


class RecorderCore:
    def __init__(self, recorder: Any, settings: RecorderNodeSettings):
        self.recorder = recorder
        self.settings = settings
        self.stats = RecorderStats()
        self._episode: list[_Buffered] | None = None
        self._episode_id = ""
        self._world_base: _Buffered | None = None  # latest world -> base transform seen on /tf

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

    def _decode(self, topic: str, cdr: bytes) -> Any:
        return messages.deserialize(cdr, RECORDED_TOPICS[topic], self.settings.distro)

    def on_message(self, topic: str, cdr: bytes, stamp_ns: int) -> str | None:
        """Take one message; returns a line for the log when an episode was written or dropped."""
        if topic not in RECORDED_TOPICS:
            raise ValueError(f"{topic} is not an rlcg episode topic")
        item = _Buffered(topic, RECORDED_TOPICS[topic], bytes(cdr), int(stamp_ns))
        if topic == topics.TF:
            self._on_tf(item)
            return None
        if topic == topics.EPISODE:
            return self._start(item)
        if self._episode is None:
            self.stats.messages_ignored += 1
            return None
        self._episode.append(item)
        if topic == topics.OUTCOME:
            return self._finish(item)
        return None

    def _on_tf(self, item: _Buffered) -> None:
        msg = self._decode(topics.TF, item.cdr)
        s = self.settings
        keep = [t for t in msg.transforms if t.header.frame_id == s.world_frame and t.child_frame_id == s.base_frame]
        if keep:
            only = messages.tf_message(keep[-1:], s.distro)
            cdr = messages.serialize(only, "tf2_msgs/msg/TFMessage", s.distro)
            self._world_base = _Buffered(topics.TF, "tf2_msgs/msg/TFMessage", cdr, item.stamp_ns)

    def _start(self, item: _Buffered) -> str | None:
        note = None
        if self._episode is not None:
            self.stats.episodes_dropped += 1
            note = f"dropped unfinished episode {self._episode_id} (a new episode started before its outcome)"
        info = self._decode(topics.EPISODE, item.cdr)
        self._episode_id = str(info.episode_id)
        self._episode = [item]
        if self._world_base is not None:
            self._episode.append(
                _Buffered(self._world_base.topic, self._world_base.msgtype, self._world_base.cdr, item.stamp_ns)
            )
        return note

    def _finish(self, item: _Buffered) -> str:
        outcome = self._decode(topics.OUTCOME, item.cdr)
        episode, episode_id = self._episode, self._episode_id
        assert episode is not None
        if str(outcome.episode_id) != episode_id:
            self._episode = None
            self.stats.episodes_dropped += 1
            return f"dropped episode {episode_id}: its outcome names episode {outcome.episode_id}"
        if not outcome.done:
            return f"episode {episode_id}: step {outcome.step} recorded, episode goes on"
        for m in episode:
            self.recorder.write_raw(m.topic, m.msgtype, m.cdr, m.stamp_ns)
        self.recorder.end_episode()
        self._episode = None
        self.stats.episodes_written += 1
        self.stats.last_episode_id = episode_id
        return f"recorded episode {episode_id} ({'success' if outcome.success else 'failure'})"

    def close(self) -> None:
        if self._episode is not None:
            self.stats.episodes_dropped += 1
            self._episode = None
        self.recorder.close()
