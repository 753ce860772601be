"""The learned grasping policy: Q(s, a) maximised over grasp poses by the cross-entropy method.

Used by `rlcg sim`, `rlcg eval` and the ROS policy node: image in, grasp pose and its Q out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcg import paths
from rlcg.configio import from_dict, to_dict
from rlcg.errors import RlcgError
from rlcg.models.qnet import QNetConfig, QNetwork, as_image_tensor
from rlcg.policies import Decision, Observation, clip_to_bounds
from rlcg.rl.calibrate import check_grasp_offset
from rlcg.rl.cem import CEMConfig, cem_maximize
from rlcg.rl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlcg.sim.camera import TablePlaneProjector
from rlcg.sim.config import CameraConfig, SimConfig, WorkspaceBounds

POLICY_KIND = "q-policy"


def default_policy_path() -> Path:
    """The small checkpoint shipped with rlcg (made by `make default-policy`, see docs/results.md)."""
    return paths.assets_dir() / "default_policy"


def check_camera_image(image: np.ndarray, size: int) -> None:
    """Refuse anything but the H x W x 3 uint8 RGB image of ``size`` x ``size`` a policy was trained on."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"the policy needs an H x W x 3 uint8 RGB image, got {got}")
    if image.shape[:2] != (size, size):
        raise ValueError(
            f"the policy was trained on {size}x{size} images, got "
            f"{image.shape[1]}x{image.shape[0]}; resize the camera image first"
        )


class LearnedPolicy:
    """Picks the grasp with the highest Q among CEM's samples; encodes each image once."""

    def __init__(
        self,
        qnet: QNetwork,
        cem: CEMConfig | None = None,
        device: str | torch.device = "cpu",
        name: str = "learned",
        floor_z: float = 0.02,
        grasp_offset: tuple[float, float] = (0.0, 0.0),
    ):
        self.device = torch.device(device)
        self.qnet = qnet.to(self.device).eval()
        self.cem = cem or CEMConfig()
        self.name = name
        self.floor_z = floor_z
        # (dx, dy) m added to the chosen grasp: `rlcg calibrate` fits it to recorded real outcomes
        self.grasp_offset = check_grasp_offset(grasp_offset)

    @property
    def bounds(self) -> WorkspaceBounds:
        return self.qnet.config.bounds

    @property
    def camera(self) -> CameraConfig | None:
        """The nominal camera the Q-network was trained with (its attention prior and heatmaps)."""
        return self.qnet.config.camera

    @property
    def image_size(self) -> int:
        return self.qnet.config.image_size

    def _features(self, image: np.ndarray) -> torch.Tensor:
        check_camera_image(image, self.image_size)
        return self.qnet.encode(as_image_tensor(image, self.device))

    @torch.no_grad()
    def act(self, obs: Observation) -> Decision:
        features = self._features(obs.image)
        generator = torch.Generator().manual_seed(int(obs.rng.integers(2**62)))
        actions, logits = cem_maximize(
            lambda a: self.qnet.head(features, a),
            1,
            obs.bounds,
            self.cem,
            generator,
            use_z=self.qnet.config.use_z,
            device=self.device,
        )
        # CEM works in float32; clip in float64 so that a sample on a bound is not a hair outside it.
        # The calibrated offset is added before clipping, so a shifted grasp never leaves the workspace.
        if not bool(torch.isfinite(logits[0])):  # e.g. an image of NaN: CEM's "best" would be a fixed corner
            raise RlcgError(f"policy {self.name}: Q is {float(logits[0])} for this image; no grasp is chosen")
        action = actions[0].double().numpy()
        action[:2] += self.grasp_offset
        return Decision(clip_to_bounds(action, obs.bounds), float(torch.sigmoid(logits[0])))

    @torch.no_grad()
    def q_values(self, image: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Q (probability of success) of each of N actions (N x 4) in one image."""
        features = self._features(image)
        a = torch.as_tensor(np.asarray(actions, np.float32), device=self.device)[None]
        return torch.sigmoid(self.qnet.head(features, a))[0].cpu().numpy()

    @torch.no_grad()
    def q_grid(self, image: np.ndarray, resolution: int = 32, yaws: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Q over an (x, y) grid of the workspace at the best of ``yaws`` yaws: (Q grid, best yaw grid),
        both (resolution, resolution), rows along x, columns along y."""
        b = self.bounds
        xs = np.linspace(b.x[0], b.x[1], resolution)
        ys = np.linspace(b.y[0], b.y[1], resolution)
        yaw = np.linspace(b.yaw[0], b.yaw[1], yaws, endpoint=False)
        gx, gy, gyaw = np.meshgrid(xs, ys, yaw, indexing="ij")
        acts = np.stack([gx, gy, gyaw, np.zeros_like(gx)], -1).reshape(-1, 4)
        q = self.q_values(image, acts).reshape(resolution, resolution, yaws)
        return q.max(-1), yaw[q.argmax(-1)]

    def q_heatmap(self, image: np.ndarray, resolution: int = 32) -> np.ndarray:
        """Q at the best yaw for every pixel whose ray meets the bin floor inside the workspace
        (H x W, NaN elsewhere); uses the nominal camera mount of the checkpoint's camera config."""
        camera = self.camera or SimConfig.load().camera
        camera = camera.with_size(image.shape[0]) if image.shape[0] == image.shape[1] else camera
        grid, _ = self.q_grid(image, resolution)
        h, w = image.shape[:2]
        projector = TablePlaneProjector(dataclasses.replace(camera, width=w, height=h))
        v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        xy = projector.unproject(u, v, self.floor_z)
        b = self.bounds
        fx = (xy[..., 0] - b.x[0]) / (b.x[1] - b.x[0]) * (resolution - 1)
        fy = (xy[..., 1] - b.y[0]) / (b.y[1] - b.y[0]) * (resolution - 1)
        inside = (fx >= 0) & (fx <= resolution - 1) & (fy >= 0) & (fy <= resolution - 1)
        ix = np.clip(np.round(fx).astype(int), 0, resolution - 1)
        iy = np.clip(np.round(fy).astype(int), 0, resolution - 1)
        return np.where(inside, grid[ix, iy], np.nan)


def policy_config(qnet: QNetwork, cem: CEMConfig, extra: dict | None = None) -> dict:
    cfg: dict[str, Any] = {"qnet": to_dict(qnet.config), "cem": to_dict(cem)}
    if extra:
        cfg.update(extra)
    return cfg


def save_policy(
    path: str | Path, qnet: QNetwork, cem: CEMConfig, extra: dict | None = None, train_state: Any = None
) -> Path:
    return save_checkpoint(path, POLICY_KIND, policy_config(qnet, cem, extra), qnet.state_dict(), train_state)


def qnet_from_config(cfg: dict) -> QNetwork:
    return QNetwork(from_dict(QNetConfig, cfg["qnet"], "checkpoint qnet config"))


def resolve_policy_path(path: str | Path) -> Path:
    """A policy checkpoint directory; "default" names the one shipped with rlcg."""
    if str(path) != "default":
        return Path(path)
    ckpt = default_policy_path()
    if not (ckpt / "config.json").is_file():
        raise CheckpointError(f"the shipped default policy is missing from {ckpt}")
    return ckpt


def load_policy(path: str | Path, device: str | torch.device = "cpu", cem: CEMConfig | None = None) -> LearnedPolicy:
    """A policy checkpoint (directory), or "default" for the one shipped with rlcg."""
    ckpt = resolve_policy_path(path)
    config, weights, _ = load_checkpoint(ckpt, kind=POLICY_KIND)
    try:
        qnet = qnet_from_config(config)
        qnet.load_state_dict(weights)
    except RlcgError as exc:
        raise CheckpointError(f"{ckpt}: {exc}") from exc
    except (RuntimeError, KeyError, ValueError, TypeError, ArithmeticError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ckpt}: weights do not match the network in config.json ({first})") from exc
    try:
        cem_cfg = cem or from_dict(CEMConfig, config.get("cem", {}), "checkpoint cem config")
        cem_cfg.validate()
    except RlcgError as exc:
        raise CheckpointError(f"{ckpt}: {exc}") from exc
    name = "default" if str(path) == "default" else f"checkpoint:{ckpt.name}"
    try:
        offset = check_grasp_offset(config.get("grasp_offset", (0.0, 0.0)), f"{ckpt}: grasp_offset")
    except RlcgError as exc:
        raise CheckpointError(str(exc)) from exc
    return LearnedPolicy(qnet, cem_cfg, device=device, name=name, grasp_offset=offset)


def export_policy(src: str | Path, dst: str | Path, note: str = "") -> Path:
    """Copy a policy checkpoint without its training state (optimizer moments, target network),
    e.g. to ship it: the result holds only config.json and the Q-network's weights."""
    config, weights, _ = load_checkpoint(src, kind=POLICY_KIND)
    if note:
        config = {**config, "note": note}
    return save_checkpoint(dst, POLICY_KIND, config, weights)
