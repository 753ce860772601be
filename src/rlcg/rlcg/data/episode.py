"""Episodes: what one grasping episode records, and the sink interface that stores them.

An episode is one scene (one seed) and one or more grasp attempts in it; each attempt is a
``Step`` (image before, action, reward, image after, done). Sim and real episodes have the same
shape, so the offline trainer cannot tell them apart except by their ``domain``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rlcg.sim.camera import CameraIntrinsics


@dataclass
class ObjectRecord:
    object_id: int
    bin_index: int
    position: tuple[float, float, float]  # world frame (m)
    orientation: tuple[float, float, float, float]  # quaternion x, y, z, w


@dataclass
class Step:
    image: np.ndarray  # H x W x 3 uint8, before the grasp
    action: np.ndarray  # (4,) float64: x, y, yaw, z_offset in the robot base frame
    reward: float
    next_image: np.ndarray  # H x W x 3 uint8, after the grasp (robot back home)
    done: bool
    success: bool
    lifted_height: float = 0.0
    q_value: float = math.nan
    stamp_ns: int | None = None  # when the image was taken; recorders fill it in when None


@dataclass
class EpisodeMeta:
    episode_id: str
    seed: int
    domain: str
    policy: str
    bin_index: int
    bins_mode: str = "single"
    object_split: str = "train"
    base_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)  # robot base in the world: x, y, yaw
    camera: CameraIntrinsics | None = None
    objects: list[ObjectRecord] = field(default_factory=list)


@dataclass
class Episode:
    meta: EpisodeMeta
    steps: list[Step]

    @property
    def success(self) -> bool:
        return any(s.success for s in self.steps)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.steps[0].image.shape if self.steps else ()


class EpisodeSink(Protocol):
    """Where collected episodes go. ``write`` is called in episode order from one process."""

    def write(self, episode: Episode) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps episodes in a list (tests, small evaluations)."""

    def __init__(self) -> None:
        self.episodes: list[Episode] = []

    def write(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def close(self) -> None:
        pass

    def __enter__(self) -> MemorySink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
