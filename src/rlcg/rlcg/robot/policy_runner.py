"""The policy node's logic: camera images in, one grasp decision per fresh image out.

It also writes the episode: it is the ExecuteGrasp client, so it knows the image it acted on, the
action, its Q value and the result, and publishes them on rlcg's episode topics (rlcg.data.topics)
for the recorder node.

Safety rules enforced here, not in the ROS shell:
- an image older than ``max_image_age_s`` (by its header stamp against the node's clock), without
  a stamp, from the future, or taken before the last grasp finished is never acted on; the age
  counts the policy's own time, so the image is still that fresh when the grasp is ready to send;
- the same image is never used for two grasps;
- after the clock goes back, no image received before the jump is acted on;
- a goal without a result after ``max_execution_s`` is given up (the node cancels it), and a late
  result never closes another episode;
- a missing or broken model fails at start-up (``load_grasp_policy``) with a clear message.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlcg.configio import ConfigError
from rlcg.data import topics
from rlcg.device import resolve_device
from rlcg.errors import RlcgError
from rlcg.policies import Observation, Policy, RandomPolicy
from rlcg.robot import messages
from rlcg.robot.params import check_interval, check_range
from rlcg.sim.camera import CameraIntrinsics
from rlcg.sim.config import SimConfig, WorkspaceBounds

NS = 1_000_000_000


class PolicyLoadError(RlcgError):
    """The policy named by the ``model`` parameter cannot be loaded."""


class StaleImageError(RlcgError):
    """No image fresh enough to act on (too old, unstamped, from the future, or already used)."""


@dataclass(frozen=True)
class PolicyNodeSettings:
    """Parameters of ``policy_node`` (config/policy_node.yaml)."""

    model: str = "default"  # checkpoint directory, "default" (the packaged model), or "random" (smoke tests)
    device: str = "cpu"
    cem_iterations: int = 2
    cem_population: int = 64
    cem_elites: int = 6
    # Workspace of the grasp search in the base frame; empty lists take config/robot.yaml's.
    workspace_x: list[float] = field(default_factory=list)
    workspace_y: list[float] = field(default_factory=list)
    workspace_yaw: list[float] = field(default_factory=list)
    workspace_z_offset: list[float] = field(default_factory=list)
    target_bin: int = -1  # bin to grasp from; -1: the bin the robot faces (bins.centre_index)
    base_bin: int = -1  # bin the robot base faces; -1: bins.centre_index
    max_image_age_s: float = 0.5
    max_clock_skew_s: float = 0.05  # an image stamped later than now by more than this is rejected
    next_image_timeout_s: float = 10.0  # an episode without an image after the grasp closes after this
    max_execution_s: float = 120.0  # a goal without a result after this is canceled, its episode dropped
    auto_execute: bool = True  # send ExecuteGrasp goals; false: only publish the chosen pose
    dry_run: bool = False  # goals ask the executor to validate and plan only
    decision_period_s: float = 1.0  # how often the node tries to decide while idle
    publish_heatmap: bool = True
    heatmap_overlay: float = 0.5  # weight of the heatmap colours over the camera image
    base_frame: str = topics.BASE_FRAME
    episode_prefix: str = "ros"
    domain: str = "real"  # recorded with every episode: real, sim, randomized ...
    bins_mode: str = "single"
    seed: int = 0
    action_name: str = topics.ACTION_NAME

    def validate(self) -> None:
        for name in ("cem_iterations", "cem_population", "cem_elites"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.cem_elites > self.cem_population:
            raise ConfigError("cem_elites must not exceed cem_population")
        for name in ("workspace_x", "workspace_y", "workspace_yaw", "workspace_z_offset"):
            value = getattr(self, name)
            if value:
                check_interval(name, value)
        check_range("max_image_age_s", self.max_image_age_s, 0.0, 60.0, low_open=True)
        check_range("max_clock_skew_s", self.max_clock_skew_s, 0.0, 10.0)
        check_range("decision_period_s", self.decision_period_s, 0.0, 3600.0, low_open=True)
        check_range("heatmap_overlay", self.heatmap_overlay, 0.0, 1.0)
        check_range("next_image_timeout_s", self.next_image_timeout_s, 0.0, 3600.0, low_open=True)
        check_range("max_execution_s", self.max_execution_s, 0.0, 3600.0, low_open=True)
        if not self.model:
            raise ConfigError("model must name a checkpoint directory, 'default' or 'random'")


def workspace_for(settings: PolicyNodeSettings, sim_config: SimConfig) -> WorkspaceBounds:
    """The search box: robot.yaml's workspace, overridden per axis, shifted to the target bin."""
    base = sim_config.robot.workspace
    bins = sim_config.world.bins
    target = bins.centre_index if settings.target_bin < 0 else settings.target_bin
    facing = bins.centre_index if settings.base_bin < 0 else settings.base_bin
    for name, index in (("target_bin", target), ("base_bin", facing)):
        if not 0 <= index < bins.count:
            raise RlcgError(f"{name} {index} is not a bin index (0..{bins.count - 1})")
    shift = bins.center_y(target) - bins.center_y(facing)
    y = tuple(settings.workspace_y) if settings.workspace_y else base.y
    bounds = WorkspaceBounds(
        x=tuple(settings.workspace_x) if settings.workspace_x else base.x,
        y=(y[0] + shift, y[1] + shift),
        yaw=tuple(settings.workspace_yaw) if settings.workspace_yaw else base.yaw,
        z_offset=tuple(settings.workspace_z_offset) if settings.workspace_z_offset else base.z_offset,
    )
    bounds.validate()
    return bounds


def nominal_grasp_z(sim_config: SimConfig) -> float:
    """TCP height of a grasp with z_offset 0 in the base frame (table top at z = 0)."""
    return sim_config.world.bins.floor_z + sim_config.robot.executor.grasp_depth


def load_grasp_policy(settings: PolicyNodeSettings, loader: Callable[..., Any] | None = None) -> Policy:
    """The policy the node runs. ``model: random`` is the scripted RandomPolicy (graph smoke tests);
    anything else is a learned checkpoint, loaded now so that a bad path fails at start-up."""
    if settings.model == "random":
        return RandomPolicy()
    if loader is None:
        try:
            from rlcg.rl.cem import CEMConfig
            from rlcg.rl.policy import load_policy
        except ImportError as exc:
            raise PolicyLoadError(
                f"cannot load model {settings.model!r}: the learned policy (rlcg.rl.policy) is not installed ({exc})"
            ) from exc
        cem = CEMConfig(
            iterations=settings.cem_iterations, population=settings.cem_population, elites=settings.cem_elites
        )
        try:  # the node's parameters, not the checkpoint: say so
            cem.validate()
        except ConfigError as exc:
            raise ConfigError(f"policy_node parameters cem_iterations/cem_population/cem_elites: {exc}") from None
        loader = lambda path, device: load_policy(path, device=device, cem=cem)  # noqa: E731
    try:
        return loader(settings.model, resolve_device(settings.device))
    except RlcgError as exc:
        raise PolicyLoadError(f"cannot load model {settings.model!r}: {exc}") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PolicyLoadError(f"cannot load model {settings.model!r}: {type(exc).__name__}: {exc}") from exc


def fit_image(rgb: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """Centre-crop to the policy's aspect ratio, then resize (area filter) to its input size."""
    if size is None:
        return rgb
    h_out, w_out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = rgb.shape[:2]
    if (h, w) == (h_out, w_out):
        return rgb
    target_ratio = w_out / h_out
    if w / h > target_ratio:  # too wide: crop the sides
        new_w = max(1, round(h * target_ratio))
        x0 = (w - new_w) // 2
        rgb = rgb[:, x0 : x0 + new_w]
    else:
        new_h = max(1, round(w / target_ratio))
        y0 = (h - new_h) // 2
        rgb = rgb[y0 : y0 + new_h]
    from PIL import Image

    return np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize((w_out, h_out), Image.Resampling.BOX))


# Perceptually ordered colour ramp (dark blue -> teal -> yellow) for Q heatmaps: 5 anchor colours.
_RAMP = np.array([[48, 18, 59], [40, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]], dtype=np.float64)


def heatmap_rgb(q: np.ndarray, under: np.ndarray | None = None, overlay: float = 0.5) -> np.ndarray:
    """Colour image of Q values in [0, 1] (NaN shows black), optionally blended over ``under``."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"a heatmap is H x W, got shape {q.shape}")
    finite = np.isfinite(q)
    pos = np.clip(np.where(finite, q, 0.0), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    rgb[~finite] = 0.0
    if under is not None:
        if under.shape[:2] != q.shape:
            under = fit_image(under, q.shape)
        rgb = overlay * rgb + (1 - overlay) * under.astype(np.float64)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def fit_intrinsics(intr: CameraIntrinsics, size: int | tuple[int, int] | None) -> CameraIntrinsics:
    """The intrinsics of an image after ``fit_image`` (centre crop, then resize)."""
    if size is None:
        return intr
    h_out, w_out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = intr.height, intr.width
    x0 = y0 = 0.0
    if w / h > w_out / h_out:
        new_w = max(1, round(h * w_out / h_out))
        x0, w = (w - new_w) // 2, new_w
    else:
        new_h = max(1, round(w * h_out / w_out))
        y0, h = (h - new_h) // 2, new_h
    sx, sy = w_out / w, h_out / h
    return CameraIntrinsics(
        width=w_out,
        height=h_out,
        fx=intr.fx * sx,
        fy=intr.fy * sy,
        cx=(intr.cx - x0) * sx,
        cy=(intr.cy - y0) * sy,
        frame_id=intr.frame_id,
        distortion_model=intr.distortion_model,
    )


def policy_id(model: str) -> str:
    """How episodes name the policy (rlcg_interfaces/msg/GraspOutcome.policy_id)."""
    return model if model in ("random", "default") else f"checkpoint:{model}"


@dataclass(frozen=True)
class Outgoing:
    """A message for the node to publish: topic, ROS type, CDR bytes."""

    topic: str
    msgtype: str
    cdr: bytes


@dataclass
class StampedImage:
    rgb: np.ndarray
    stamp_ns: int
    frame_id: str


@dataclass
class GraspDecision:
    action: np.ndarray  # x, y, yaw, z_offset in the base frame
    q_value: float
    image: StampedImage  # what the policy saw (fitted to its input size)
    camera: CameraIntrinsics | None  # intrinsics of that image, when a CameraInfo was received
    decided_ns: int
    episode_id: str
    latency_s: float  # time the policy took
    result: Any = None  # the executor's result fields (success, lifted_height, message) once known
    result_ns: int = 0


class RunnerState:
    IDLE = "idle"
    EXECUTING = "executing"  # a goal is out; waiting for its result
    AWAITING_NEXT_IMAGE = "awaiting_next_image"  # result in; waiting for the image after the grasp


class PolicyRunner:
    """The policy node's state machine: one episode (one ExecuteGrasp goal and result) at a time.

    idle --decide()--> executing --on_result()--> awaiting_next_image --on_image()/timeout--> idle

    Every message of an episode is stamped with the decision image's stamp, as rlcg's bag format
    wants a step's image, grasp pose, image after and outcome to carry equal header stamps.
    """

    def __init__(
        self,
        policy: Policy,
        settings: PolicyNodeSettings,
        bounds: WorkspaceBounds,
        distro: str = messages.DEFAULT_DISTRO,
        bin_index: int = 1,
    ):
        self.policy = policy
        self.settings = settings
        self.bounds = bounds
        self.distro = distro
        self.bin_index = bin_index
        self.rng = np.random.default_rng(settings.seed)
        self.latest: StampedImage | None = None
        self.camera: CameraIntrinsics | None = None  # from the last CameraInfo
        self.last_used_stamp_ns = -1
        self.not_before_ns = 0  # images must be taken after this (the end of the last grasp)
        self.state = RunnerState.IDLE
        self.pending: GraspDecision | None = None
        self.episodes_done = 0
        self._episodes = itertools.count(1)
        self._session = time.strftime("%Y%m%dT%H%M%S")

    @classmethod
    def from_settings(
        cls,
        settings: PolicyNodeSettings,
        sim_config: SimConfig | None = None,
        loader: Callable[..., Any] | None = None,
        distro: str = messages.DEFAULT_DISTRO,
    ) -> PolicyRunner:
        """Load the model (a bad one raises PolicyLoadError now, at start-up) and the workspace."""
        sim_config = sim_config or SimConfig.load()
        bounds = workspace_for(settings, sim_config)
        policy = load_grasp_policy(settings, loader)
        bins = sim_config.world.bins
        bin_index = bins.centre_index if settings.target_bin < 0 else settings.target_bin
        return cls(policy, settings, bounds, distro, bin_index)

    @property
    def image_size(self):
        return getattr(self.policy, "image_size", None)

    # ----------------------------------------------------------------- inputs
    def on_image(self, msg: Any) -> None:
        """Store a sensor_msgs/Image (rosbags or rclpy object); unreadable encodings raise at once."""
        rgb = messages.image_from_msg(msg)
        self.latest = StampedImage(rgb, messages.stamp_ns(msg.header), str(msg.header.frame_id))

    def on_image_cdr(self, cdr: bytes) -> None:
        self.on_image(messages.deserialize(cdr, "sensor_msgs/msg/Image", self.distro))

    def on_camera_info_cdr(self, cdr: bytes) -> None:
        self.camera = messages.intrinsics_from_msg(messages.deserialize(cdr, "sensor_msgs/msg/CameraInfo", self.distro))

    # ----------------------------------------------------------------- freshness
    def fresh_image(self, now_ns: int) -> StampedImage:
        """The newest image if it may be acted on at ``now_ns``; StaleImageError says why not."""
        img = self.latest
        s = self.settings
        if now_ns + s.max_clock_skew_s * NS < max(self.last_used_stamp_ns, self.not_before_ns):
            # The clock went back (a simulator reset, a bag replayed from its start), by more than
            # the skew an image's stamp may have: the stamps of the old timeline say nothing about
            # the new one. Images stamped before the jump now lie in the future and are refused
            # below; only the new timeline's fresh images pass. The newest image is dropped too: taken
            # before the jump, its stamp may look fresh on the new timeline (say, during the grasp).
            self.last_used_stamp_ns, self.not_before_ns = -1, 0
            self.latest = img = None
        if img is None:
            raise StaleImageError("no camera image received yet")
        if img.stamp_ns <= 0:
            raise StaleImageError("the camera image has no header stamp; refusing to act on an image of unknown age")
        age = (now_ns - img.stamp_ns) / NS
        if age > s.max_image_age_s:
            raise StaleImageError(f"newest camera image is {age:.3f} s old (max_image_age_s {s.max_image_age_s})")
        if -age > s.max_clock_skew_s:
            raise StaleImageError(
                f"camera image is stamped {-age:.3f} s in the future: check the clocks (use_sim_time?)"
            )
        if img.stamp_ns <= self.last_used_stamp_ns:
            raise StaleImageError("no new camera image since the last grasp decision")
        if img.stamp_ns < self.not_before_ns:
            raise StaleImageError("newest camera image was taken before the last grasp finished")
        return img

    def camera_matches(self, img: StampedImage) -> bool:
        """Whether the last CameraInfo describes ``img`` (same size and frame); intrinsics of another
        camera or resolution are not recorded with an episode."""
        cam = self.camera
        if cam is None:
            return False
        h, w = img.rgb.shape[:2]
        return (cam.width, cam.height) == (w, h) and (
            not cam.frame_id or not img.frame_id or cam.frame_id == img.frame_id
        )

    # ----------------------------------------------------------------- deciding
    def decide(self, now_ns: int) -> GraspDecision:
        """A grasp for the newest image; StaleImageError when there is no fresh one."""
        if self.state != RunnerState.IDLE:
            raise RlcgError(f"cannot decide while {self.state}")
        img = self.fresh_image(now_ns)
        rgb = fit_image(img.rgb, self.image_size)
        t0 = time.perf_counter()
        decision = self.policy.act(Observation(image=rgb, bounds=self.bounds, rng=self.rng))
        latency = time.perf_counter() - t0
        action = np.asarray(decision.action, dtype=np.float64).reshape(-1)
        if action.size == 3:
            action = np.append(action, 0.0)
        if action.size != 4 or not np.all(np.isfinite(action)):
            raise RlcgError(f"policy {getattr(self.policy, 'name', '?')} returned an invalid action {action.tolist()}")
        if np.any(action < self.bounds.low - 1e-9) or np.any(action > self.bounds.high + 1e-9):
            raise RlcgError(f"policy returned an action outside the workspace: {action.round(4).tolist()}")
        self.last_used_stamp_ns = img.stamp_ns
        # The grasp goes out now, not at now_ns: the image must still be fresh after the policy's time.
        # (Wall time; under a simulated clock slower than real time this errs on the safe side.)
        age = (now_ns - img.stamp_ns) / NS + latency
        if age > self.settings.max_image_age_s:
            raise StaleImageError(
                f"the camera image was {age:.3f} s old when the grasp was ready ({latency:.3f} s of it deciding; "
                f"max_image_age_s {self.settings.max_image_age_s}); waiting for a newer one"
            )
        camera = None
        if self.camera is not None and self.camera_matches(img):
            camera = fit_intrinsics(self.camera, rgb.shape[:2])
        return GraspDecision(
            action=action,
            q_value=float(decision.q_value),
            image=StampedImage(rgb, img.stamp_ns, img.frame_id),
            camera=camera,
            decided_ns=int(now_ns),
            episode_id=f"{self.settings.episode_prefix}-{self._session}-{next(self._episodes):06d}",
            latency_s=latency,
        )

    def goal_fields(self, decision: GraspDecision) -> dict[str, Any]:
        """Fields of the ExecuteGrasp goal (grasp, z_offset, episode_id, dry_run) as rosbags objects."""
        return {
            "grasp": messages.action_pose_msg(
                decision.action, self.settings.base_frame, decision.image.stamp_ns, self.distro
            ),
            "z_offset": float(decision.action[3]),
            "episode_id": decision.episode_id,
            "dry_run": bool(self.settings.dry_run),
        }

    def goal_cdr(self, decision: GraspDecision) -> bytes:
        goal = msg_of("rlcg_interfaces/action/ExecuteGrasp_Goal", self.distro, **self.goal_fields(decision))
        return messages.serialize(goal, distro=self.distro)

    def start_episode(self, decision: GraspDecision) -> list[Outgoing]:
        """The goal is going out: the episode's first messages (info, camera info, image, pose),
        for the node to publish once the executor has accepted the goal."""
        self.state = RunnerState.EXECUTING
        self.pending = decision
        return self.decision_messages(decision, episode=True)

    def decision_messages(self, decision: GraspDecision, episode: bool) -> list[Outgoing]:
        """Image, grasp pose (and with ``episode``: episode info, camera info) of a decision; the
        heatmap goes out separately (``heatmap_message``), it is not part of an episode."""
        d = self.distro
        stamp = decision.image.stamp_ns
        out: list[Outgoing] = []
        if episode:
            info = msg_of(
                "rlcg_interfaces/msg/EpisodeInfo",
                d,
                header=messages.header_msg(stamp, topics.WORLD_FRAME, d),
                episode_id=decision.episode_id,
                seed=int(self.settings.seed),
                domain=self.settings.domain,
                policy_id=policy_id(self.settings.model),
                bin_index=int(self.bin_index),
                bins_mode=self.settings.bins_mode,
                object_split="",
                objects=[],
            )
            out.append(Outgoing(topics.EPISODE, topics.TOPIC_TYPES[topics.EPISODE], messages.serialize(info, distro=d)))
            if decision.camera is not None:
                cam = messages.camera_info_msg(decision.camera, stamp, d)
                out.append(
                    Outgoing(topics.CAMERA_INFO, "sensor_msgs/msg/CameraInfo", messages.serialize(cam, distro=d))
                )
        image = messages.image_msg(decision.image.rgb, stamp, decision.image.frame_id or topics.CAMERA_FRAME, "rgb8", d)
        out.append(Outgoing(topics.IMAGE, "sensor_msgs/msg/Image", messages.serialize(image, distro=d)))
        pose = messages.action_pose_msg(decision.action, self.settings.base_frame, stamp, d)
        out.append(Outgoing(topics.GRASP_POSE, "geometry_msgs/msg/PoseStamped", messages.serialize(pose, distro=d)))
        return out

    def heatmap_message(self, decision: GraspDecision, topic: str) -> Outgoing | None:
        """The policy's Q over the workspace, drawn over the image it decided on; None when heatmaps
        are off or the policy has no Q function. Computed here, after the goal has gone out, so that
        drawing it never ages the image a grasp is decided on."""
        if not (self.settings.publish_heatmap and hasattr(self.policy, "q_heatmap")):
            return None
        rgb = decision.image.rgb
        heatmap = heatmap_rgb(self.policy.q_heatmap(rgb), rgb, self.settings.heatmap_overlay)
        msg = messages.image_msg(heatmap, decision.image.stamp_ns, decision.image.frame_id, "rgb8", self.distro)
        return Outgoing(topic, "sensor_msgs/msg/Image", messages.serialize(msg, distro=self.distro))

    def on_result(self, result: Any, now_ns: int, episode_id: str | None = None) -> None:
        """The executor's result (an object with success, lifted_height, message) of the goal of
        ``episode_id`` arrived; a result of another episode (one given up) is an error."""
        if self.state != RunnerState.EXECUTING or self.pending is None:
            raise RlcgError(f"a grasp result arrived while {self.state}")
        if episode_id is not None and episode_id != self.pending.episode_id:
            raise RlcgError(f"a result of episode {episode_id} arrived during episode {self.pending.episode_id}")
        self.pending.result = {
            "success": bool(result.success),
            "lifted_height": float(result.lifted_height),
            "message": str(result.message),
        }
        self.pending.result_ns = int(now_ns)
        self.not_before_ns = max(self.not_before_ns, int(now_ns))
        self.state = RunnerState.AWAITING_NEXT_IMAGE

    def abandon(self, reason: str, now_ns: int) -> str:
        """The goal was rejected, aborted or canceled: no grasp attempt to record. The episode's
        first messages must not have been published (the node publishes them on acceptance), or
        the recorder drops the incomplete episode when the next one starts."""
        self.pending = None
        self.state = RunnerState.IDLE
        self.not_before_ns = max(self.not_before_ns, int(now_ns))
        return reason

    def overdue(self, now_ns: int) -> bool:
        """The goal out has had no result for longer than ``max_execution_s`` (or the clock went back
        past its start): the node cancels it and abandons the episode."""
        if self.state != RunnerState.EXECUTING or self.pending is None:
            return False
        waited = (now_ns - self.pending.decided_ns) / NS
        return waited > self.settings.max_execution_s or -waited > self.settings.max_clock_skew_s

    def next_image_ready(self) -> bool:
        """A camera image taken after the result is in (the robot is home again)."""
        return (
            self.state == RunnerState.AWAITING_NEXT_IMAGE
            and self.latest is not None
            and self.latest.stamp_ns >= self.not_before_ns
        )

    def finish(self, next_image: StampedImage | None) -> list[Outgoing]:
        """The episode's last messages: the image after the grasp (if any) and the outcome."""
        d = self.distro
        decision = self.pending
        assert decision is not None and decision.result is not None
        stamp = decision.image.stamp_ns
        out: list[Outgoing] = []
        if next_image is not None:
            rgb = fit_image(next_image.rgb, decision.image.rgb.shape[:2])
            msg = messages.image_msg(rgb, stamp, decision.image.frame_id or topics.CAMERA_FRAME, "rgb8", d)
            out.append(Outgoing(topics.NEXT_IMAGE, "sensor_msgs/msg/Image", messages.serialize(msg, distro=d)))
        r = decision.result
        outcome = msg_of(
            "rlcg_interfaces/msg/GraspOutcome",
            d,
            header=messages.header_msg(stamp, self.settings.base_frame, d),
            episode_id=decision.episode_id,
            step=0,
            reward=1.0 if r["success"] else 0.0,
            done=True,
            success=bool(r["success"]),
            lifted_height=float(r["lifted_height"]),
            q_value=float(decision.q_value),
            domain=self.settings.domain,
            policy_id=policy_id(self.settings.model),
            seed=int(self.settings.seed),
            bin_index=int(self.bin_index),
            action=np.asarray(decision.action, dtype=np.float64),
        )
        out.append(Outgoing(topics.OUTCOME, topics.TOPIC_TYPES[topics.OUTCOME], messages.serialize(outcome, distro=d)))
        self.pending = None
        self.state = RunnerState.IDLE
        self.episodes_done += 1
        return out

    def finish_if_ready(self, now_ns: int) -> list[Outgoing]:
        """Close the episode once the image after the grasp is in, or give up waiting for it."""
        if self.state != RunnerState.AWAITING_NEXT_IMAGE or self.pending is None:
            return []
        if self.next_image_ready():
            return self.finish(self.latest)
        waited = (now_ns - self.pending.result_ns) / NS
        if waited > self.settings.next_image_timeout_s or -waited > self.settings.max_clock_skew_s:
            return self.finish(None)  # timed out, or the clock went back: the image after would never come
        return []


def msg_of(msgtype: str, distro: str, **fields: Any) -> Any:
    return messages.msg_class(msgtype, distro)(**fields)
