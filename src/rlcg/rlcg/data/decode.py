"""Episodes back out of a bag: group the raw messages into episodes, decode and check them.

Grouping follows docs/data-format.md: an EpisodeInfo message starts an episode; the image, grasp pose
and image after of a step are closed by its GraspOutcome; the outcome with ``done`` ends the episode.
Every episode that breaks a rule is skipped whole and reported to ``Problems`` with its file and id;
everything else in the bag is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlcg.data import cdr, topics
from rlcg.data.bags import BagReader, Problems
from rlcg.data.types import quaternion_yaw, stamp_ns, typestore

# Encodings converted to rgb8, with their channel count (sensor_msgs/image_encodings.hpp names).
CONVERTIBLE_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
ACTION_TOLERANCE = 1e-6  # grasp pose vs the outcome's action (m, rad)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the dataset stores actions and rewards as float32


class ImageDecodeError(ValueError):
    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


def image_to_rgb8(encoding: str, height: int, width: int, step: int, data: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 array of a sensor_msgs/Image's fields (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    channels = CONVERTIBLE_ENCODINGS.get(encoding)
    if channels is None:
        raise ImageDecodeError(
            "bad_encoding",
            f"image encoding {encoding!r} cannot be used (rgb8, or bgr8/rgba8/bgra8/mono8 converted to rgb8)",
        )
    if height <= 0 or width <= 0:
        raise ImageDecodeError("corrupt_message", f"empty image ({width}x{height})")
    if step < width * channels or data.size < step * height:
        raise ImageDecodeError(
            "corrupt_message", f"{encoding} image of {width}x{height} with step {step} but {data.size} bytes"
        )
    rows = data[: step * height].reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))  # mono8


@dataclass
class EpisodeData:
    """One decoded, checked episode. Per-step values are kept as the lists they were gathered in (the
    ingest writes them in blocks); the array properties give (T, ...) numpy arrays."""

    bag: str
    episode_id: str
    domain: str
    policy: str
    seed: int
    bin_index: int
    image_list: list[np.ndarray]  # T images, H x W x 3 uint8, before each grasp
    next_image_list: list[np.ndarray]  # T images after each grasp
    action_list: list[tuple[float, float, float, float]]  # x, y, yaw, z_offset in the base frame
    reward_list: list[float]
    done_list: list[bool]
    success_list: list[bool]
    lifted_list: list[float]
    q_list: list[float]
    stamp_list: list[int]  # header stamps of the images (ns)
    start_ns: int  # bag log times of the episode's first and last message
    end_ns: int
    base_pose: tuple[float, float, float] | None = None  # x, y, yaw of the robot base in the world

    @property
    def num_steps(self) -> int:
        return len(self.reward_list)

    @property
    def success(self) -> bool:
        return any(self.success_list)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image_list[0].shape[:2]

    images = property(lambda self: np.stack(self.image_list))
    next_images = property(lambda self: np.stack(self.next_image_list))
    actions = property(lambda self: np.array(self.action_list, dtype=np.float64))
    rewards = property(lambda self: np.array(self.reward_list, dtype=np.float32))
    dones = property(lambda self: np.array(self.done_list, dtype=bool))
    successes = property(lambda self: np.array(self.success_list, dtype=bool))
    lifted_heights = property(lambda self: np.array(self.lifted_list, dtype=np.float64))
    q_values = property(lambda self: np.array(self.q_list, dtype=np.float64))
    stamps = property(lambda self: np.array(self.stamp_list, dtype=np.int64))


class _Builder:
    """The episode being assembled (plain slots: one of these is touched per message)."""

    __slots__ = (
        "index", "info", "base_pose", "p_image", "p_next", "p_pose", "images", "next_images", "actions",
        "rewards", "dones", "successes", "lifted", "q_values", "stamps", "first_outcome", "errors", "notes",
        "image_size", "start_ns", "end_ns",
    )  # fmt: skip

    def __init__(self, index: int, t: int):
        self.index = index
        self.info: cdr.EpisodeInfoFields | None = None
        self.base_pose: tuple[float, float, float] | None = None
        self.p_image: list = []  # messages of the step in progress
        self.p_next: list = []
        self.p_pose: list = []
        self.images: list = []  # per completed step
        self.next_images: list = []
        self.actions: list = []
        self.rewards: list = []
        self.dones: list = []
        self.successes: list = []
        self.lifted: list = []
        self.q_values: list = []
        self.stamps: list = []
        self.first_outcome: cdr.OutcomeFields | None = None
        self.errors: dict[str, str] = {}  # kind -> first reason: the episode is rejected
        self.notes: dict[str, str] = {}  # kind -> first note: reported, the episode is kept
        self.image_size: tuple[int, int] | None = None
        self.start_ns = self.end_ns = t

    @property
    def label(self) -> str:
        if self.info is not None and self.info.episode_id:
            return self.info.episode_id
        if self.first_outcome is not None:
            return self.first_outcome.episode_id
        return f"#{self.index} (no EpisodeInfo)"

    @property
    def has_content(self) -> bool:
        return self.info is not None or bool(self.rewards or self.p_image or self.p_next or self.p_pose)

    def reject(self, kind: str, text: str) -> None:
        self.errors.setdefault(kind, text)


_IMAGE, _NEXT, _POSE, _OUTCOME, _EPISODE, _TF, _OTHER = range(7)
_KIND = {
    topics.IMAGE: _IMAGE,
    topics.NEXT_IMAGE: _NEXT,
    topics.GRASP_POSE: _POSE,
    topics.OUTCOME: _OUTCOME,
    topics.EPISODE: _EPISODE,
    topics.TF: _TF,
    topics.CAMERA_INFO: _OTHER,  # recorded for ROS tools; the dataset does not need it, so it is not decoded
}


class EpisodeStream:
    """The checked episodes of one bag, in recording order.

    ``image_size`` (H, W): images of another size are rejected; when None, the first accepted episode
    sets it (``enforce_size=False`` accepts any size, for ``rlcg data info``).
    """

    def __init__(
        self,
        bag: str | Path,
        problems: Problems,
        image_size: tuple[int, int] | None = None,
        enforce_size: bool = True,
        files: list[Path] | None = None,
        count_topics: bool = False,
    ):
        self.bag = Path(bag)
        self.problems = problems
        self.reader = BagReader(bag, problems, files, count_topics=count_topics)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.enforce_size = enforce_size
        self.store = typestore("jazzy")  # the standard types rlcg reads are alike in humble and jazzy
        self.fast = cdr.fast_path_valid()
        self.rejected = 0
        self._count = 0

    def __iter__(self) -> Iterator[EpisodeData]:
        b: _Builder | None = None
        last_time = -1
        last_by_topic: dict[str, int] = {}
        expected = topics.TOPIC_TYPES
        fast = self.fast
        for batch in self.reader.batches():
            for topic, msgtype, log_time, data in batch:
                kind = _KIND.get(topic)
                if kind is None:
                    continue  # other topics (joint states, diagnostics ...) are not used
                if kind == _EPISODE and b is not None and b.has_content:
                    done = self._finish(b, complete=False, why="a new episode began before its final outcome")
                    if done is not None:
                        yield done
                    b = None
                if b is None:
                    self._count += 1
                    b = _Builder(self._count, log_time)
                if log_time <= last_time:  # log times only ever grow in a good recording
                    if last_by_topic.get(topic) == log_time:
                        self.problems.add(
                            "duplicate_timestamp",
                            self.reader.file or self.bag,
                            b.label,
                            f"a second {topic} message at log time {log_time} ns was dropped (the first is kept)",
                        )
                        continue
                    if log_time < last_time:
                        b.reject("out_of_order", f"{topic} at {log_time} ns comes after a message at {last_time} ns")
                last_time = last_by_topic[topic] = b.end_ns = log_time
                if msgtype != expected[topic]:
                    b.reject("corrupt_message", f"{topic} carries {msgtype}, expected {expected[topic]}")
                    continue
                try:
                    little = fast and data[1] == 1  # encapsulation 0x0001: plain little-endian CDR
                    if kind == _IMAGE:
                        b.p_image.append(self._image(b, cdr.image(data) if little else self._slow_image(data)))
                    elif kind == _NEXT:
                        b.p_next.append(self._image(b, cdr.image(data) if little else self._slow_image(data)))
                    elif kind == _POSE:
                        _, frame, v = cdr.pose_stamped(data) if little else self._slow_pose(data)
                        if frame != topics.BASE_FRAME:
                            b.reject("wrong_frame", f"grasp pose in frame {frame!r}, not {topics.BASE_FRAME!r}")
                        if math.isfinite(sum(v)):  # NaN and infinities survive a sum
                            b.p_pose.append((v[0], v[1], quaternion_yaw(v[3], v[4], v[5], v[6]), v[2]))
                        else:
                            b.reject("nan_pose", f"the grasp pose of step {len(b.rewards)} holds NaN or infinity")
                            b.p_pose.append(None)
                    elif kind == _OUTCOME:
                        outcome = cdr.grasp_outcome(data) if little else self._slow_outcome(data)
                        self._close_step(b, outcome)
                        if outcome.done:
                            done = self._finish(b, complete=True)
                            if done is not None:
                                yield done
                            b = None
                    elif kind == _EPISODE:
                        b.info = cdr.episode_info(data) if little else self._slow_info(data)
                    elif kind == _TF:
                        for _, _, child, v in cdr.tf_message(data) if little else self._slow_tf(data):
                            if child != topics.BASE_FRAME:
                                continue
                            if math.isfinite(sum(v)):
                                b.base_pose = (v[0], v[1], quaternion_yaw(v[3], v[4], v[5], v[6]))
                            else:
                                b.reject("nan_pose", f"the robot base pose on {topic} holds NaN or infinity")
                except ImageDecodeError as exc:
                    b.reject(exc.kind, f"{topic}: {exc}")
                except Exception as exc:  # malformed CDR: struct and rosbags raise several exception types
                    b.reject("corrupt_message", f"cannot decode a {msgtype} on {topic}: {exc}")
        if b is not None and b.has_content:
            why = "the bag ends before the episode's final outcome"
            if any(p.kind == "truncated" and p.file == str(self.reader.file) for p in self.problems.items):
                why += " (the recording was cut off)"
            done = self._finish(b, complete=False, why=why)
            if done is not None:
                yield done

    # ------------------------------------------------------------------ per message
    def _image(self, b: _Builder, m: cdr.ImageFields) -> np.ndarray:
        encoding, h, w, step, data = m[4], m[2], m[3], m[5], m[6]
        if encoding == "rgb8" and step == w * 3 and data.size == step * h and h > 0 and w > 0:
            image = data.reshape(h, w, 3)  # the common case: a view, nothing converted
        else:
            image = image_to_rgb8(encoding, h, w, step, data)
            if encoding != "rgb8":
                b.notes.setdefault("converted_encoding", f"{encoding} images converted to rgb8")
        size = (h, w)
        if b.image_size is None:
            b.image_size = size
        elif size != b.image_size:
            raise ImageDecodeError(
                "image_size", f"a {size[0]}x{size[1]} image in an episode of {b.image_size[0]}x{b.image_size[1]}"
            )
        return image

    def _close_step(self, b: _Builder, outcome: cdr.OutcomeFields) -> None:
        k = len(b.rewards)
        if b.first_outcome is None:
            b.first_outcome = outcome
        if len(b.p_image) == len(b.p_pose) == len(b.p_next) == 1:
            (image,), (pose,), (next_image,) = b.p_image, b.p_pose, b.p_next
        else:
            parts = []
            pending = ((topics.IMAGE, b.p_image), (topics.GRASP_POSE, b.p_pose), (topics.NEXT_IMAGE, b.p_next))
            for topic, got in pending:
                if not got:
                    b.reject("missing_topic", f"step {k} has no {topic} message before its outcome")
                elif len(got) > 1:
                    b.reject("extra_message", f"step {k} has {len(got)} {topic} messages")
                parts.append(got[0] if got else None)
            image, pose, next_image = parts
        b.p_image, b.p_pose, b.p_next = [], [], []
        if outcome.step != k:
            b.reject("step_order", f"outcome of step {outcome.step} where step {k} was expected")
        if b.info is not None and outcome.episode_id != b.info.episode_id:
            b.reject("inconsistent", f"outcome of episode {outcome.episode_id!r} inside episode {b.info.episode_id!r}")
        elif outcome.episode_id != b.first_outcome.episode_id:
            b.reject(
                "inconsistent",
                f"outcomes of two episodes ({b.first_outcome.episode_id!r}, {outcome.episode_id!r}) without an end",
            )
        action = outcome.action
        # stored as float32: a value beyond its range would become infinity there
        finite = math.isfinite(sum(action)) and max(map(abs, action)) <= FLOAT32_MAX
        if not (finite and math.isfinite(outcome.reward) and abs(outcome.reward) <= FLOAT32_MAX):
            b.reject("nan_value", f"the outcome of step {k} holds NaN, infinity or a value past float32 range")
        if pose is not None and finite:
            diff = max(
                abs(pose[0] - action[0]),
                abs(pose[1] - action[1]),
                abs(math.remainder(pose[2] - action[2], 2 * math.pi)),
                abs(pose[3] - action[3]),
            )
            if diff > ACTION_TOLERANCE:
                b.reject("inconsistent", f"the grasp pose of step {k} differs from the outcome's action by {diff:.3g}")
        b.images.append(image)
        b.next_images.append(next_image)
        b.actions.append(action)
        b.rewards.append(outcome.reward)
        b.dones.append(outcome.done)
        b.successes.append(outcome.success)
        b.lifted.append(outcome.lifted_height)
        b.q_values.append(outcome.q_value)
        b.stamps.append(outcome.stamp_ns)

    # The same fields through the rosbags decoder: big-endian CDR, or definitions the direct readers
    # do not follow.
    def _slow_image(self, data) -> cdr.ImageFields:
        m = self.store.deserialize_cdr(data, "sensor_msgs/msg/Image")
        return cdr.ImageFields(
            stamp_ns(m.header), m.header.frame_id, int(m.height), int(m.width), m.encoding, int(m.step),
            np.asarray(m.data, dtype=np.uint8),
        )  # fmt: skip

    def _slow_pose(self, data) -> tuple[int, str, tuple[float, ...]]:
        m = self.store.deserialize_cdr(data, "geometry_msgs/msg/PoseStamped")
        p, q = m.pose.position, m.pose.orientation
        return stamp_ns(m.header), m.header.frame_id, (p.x, p.y, p.z, q.x, q.y, q.z, q.w)

    def _slow_tf(self, data) -> list[tuple[int, str, str, tuple[float, ...]]]:
        out = []
        for tf in self.store.deserialize_cdr(data, "tf2_msgs/msg/TFMessage").transforms:
            t, r = tf.transform.translation, tf.transform.rotation
            values = (t.x, t.y, t.z, r.x, r.y, r.z, r.w)
            out.append((stamp_ns(tf.header), tf.header.frame_id, tf.child_frame_id, values))
        return out

    def _slow_outcome(self, data) -> cdr.OutcomeFields:
        m = self.store.deserialize_cdr(data, "rlcg_interfaces/msg/GraspOutcome")
        return cdr.OutcomeFields(
            stamp_ns(m.header), m.header.frame_id, m.episode_id, int(m.step), float(m.reward), bool(m.done),
            bool(m.success), float(m.lifted_height), float(m.q_value), m.domain, m.policy_id, int(m.seed),
            int(m.bin_index), tuple(float(v) for v in m.action),
        )  # fmt: skip

    def _slow_info(self, data) -> cdr.EpisodeInfoFields:
        m = self.store.deserialize_cdr(data, "rlcg_interfaces/msg/EpisodeInfo")
        return cdr.EpisodeInfoFields(
            stamp_ns(m.header), m.header.frame_id, m.episode_id, int(m.seed), m.domain, m.policy_id,
            int(m.bin_index),
        )  # fmt: skip

    # ------------------------------------------------------------------ episode end
    def _finish(self, b: _Builder, complete: bool, why: str = "") -> EpisodeData | None:
        file = self.reader.file or self.bag
        if not complete:
            b.reject("missing_outcome", f"incomplete episode skipped: {why}")
        if complete and b.image_size is not None and self.enforce_size:
            if self.image_size is None and not b.errors:
                self.image_size = b.image_size
            elif self.image_size is not None and b.image_size != self.image_size:
                h, w = b.image_size
                b.reject("image_size", f"{h}x{w} images where the rest are {self.image_size[0]}x{self.image_size[1]}")
        for kind, text in b.notes.items():
            self.problems.add(kind, file, b.label, text)
        if b.errors:
            self.rejected += 1
            for kind, text in b.errors.items():
                self.problems.add(kind, file, b.label, text)
            return None
        info = b.info
        first = b.first_outcome
        return EpisodeData(
            bag=str(self.bag),
            episode_id=b.label,
            domain=info.domain if info is not None else first.domain,
            policy=info.policy_id if info is not None else first.policy_id,
            seed=info.seed if info is not None else first.seed,
            bin_index=info.bin_index if info is not None else first.bin_index,
            image_list=b.images,
            next_image_list=b.next_images,
            action_list=b.actions,
            reward_list=b.rewards,
            done_list=b.dones,
            success_list=b.successes,
            lifted_list=b.lifted,
            q_list=b.q_values,
            stamp_list=b.stamps,
            start_ns=b.start_ns,
            end_ns=b.end_ns,
            base_pose=b.base_pose,
        )
