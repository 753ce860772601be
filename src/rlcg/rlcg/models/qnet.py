"""The grasp Q-function Q(s, a): a convolutional network over the camera image with the grasp
action fused in, after QT-Opt (Kalashnikov et al. 2018), scaled down for 64x64 images.

QT-Opt broadcast-adds an embedding of the action to a convolutional feature map midway through
the network and continues with convolutions and fully connected layers to a sigmoid. Here the
action is merged late, at a 16x16 map: everything before the merge depends on the image alone, so
the cross-entropy method encodes an image once and scores all its candidate grasps with the small
post-merge head (``encode`` + ``head``), instead of running the full network per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlcg.sim.camera import TablePlaneProjector
from rlcg.sim.config import CameraConfig, SimConfig, WorkspaceBounds


@dataclass(frozen=True)
class QNetConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 64)  # stem, then one entry per stride-2 stage
    merge_size: int = 16  # spatial size of the feature map the action is fused with
    extra_convs: int = 2  # 3x3 convolutions at the merge resolution: receptive field over whole objects
    head_channels: int = 32
    hidden: int = 64
    use_z: bool = False  # whether the action's z offset is an input (and searched by CEM)
    fusion: str = "attention"  # "attention" (the action picks where to look) or "add" (QT-Opt's broadcast-add)
    bounds: WorkspaceBounds = WorkspaceBounds()
    # Attention prior: with the nominal camera, the network starts by looking where the grasp point
    # projects into the image (a Gaussian over the feature map), and learns corrections to it.
    camera: CameraConfig | None = None
    prior_height: float = 0.04  # base-frame height of the projected grasp point (m)
    prior_sigma: float = 0.75  # width of the prior, in feature-map cells

    @classmethod
    def for_world(cls, sim: SimConfig, **overrides) -> QNetConfig:
        """The Q-network for a world config: its image size, workspace bounds and nominal camera."""
        base = {"image_size": sim.camera.width, "bounds": sim.robot.workspace, "camera": sim.camera}
        return cls(**{**base, **overrides})

    @property
    def action_features(self) -> int:
        return 5 if self.use_z else 4


def encode_actions(actions: torch.Tensor, bounds: WorkspaceBounds, use_z: bool) -> torch.Tensor:
    """Action features: x and y scaled to [-1, 1] over the workspace, the yaw as sin/cos of twice
    the angle (a parallel gripper turned by pi is the same grasp), and optionally z scaled."""
    lo = torch.as_tensor(bounds.low, dtype=actions.dtype, device=actions.device)
    hi = torch.as_tensor(bounds.high, dtype=actions.dtype, device=actions.device)
    xy = 2 * (actions[..., :2] - lo[:2]) / (hi[:2] - lo[:2]) - 1
    yaw2 = 2 * actions[..., 2:3]
    feats = [xy, torch.sin(yaw2), torch.cos(yaw2)]
    if use_z:
        feats.append(2 * (actions[..., 3:4] - lo[3]) / (hi[3] - lo[3]) - 1)
    return torch.cat(feats, dim=-1)


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2), nn.ReLU(inplace=True))


class QNetwork(nn.Module):
    """Q(s, a) -> logit of the probability that grasp ``a`` succeeds in image ``s``."""

    def __init__(self, config: QNetConfig):
        super().__init__()
        self.config = config
        c = config.channels
        stages = max(1, round(math.log2(config.image_size / config.merge_size)))
        layers: list[nn.Module] = [conv(3, c[0], k=5, stride=2)]
        cin = c[0]
        for i in range(stages - 1):
            cout = c[min(i + 1, len(c) - 1)]
            layers += [conv(cin, cin), conv(cin, cout, stride=2)]
            cin = cout
        layers += [conv(cin, cin) for _ in range(config.extra_convs)]
        layers.append(nn.AdaptiveAvgPool2d(config.merge_size))
        self.encoder = nn.Sequential(*layers)
        self.feature_channels = cin
        if config.fusion == "add":
            self.action_mlp = nn.Sequential(
                nn.Linear(config.action_features, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, cin)
            )
            self.head_conv = conv(cin, config.head_channels)
            self.head_fc = nn.Sequential(
                nn.Flatten(),
                nn.Linear(config.head_channels * config.merge_size**2, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, 1),
            )
        elif config.fusion == "attention":
            cells = config.merge_size**2
            self.where = nn.Sequential(
                nn.Linear(config.action_features, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, cells),
            )
            nn.init.zeros_(self.where[-1].weight)  # start from the geometric prior alone
            nn.init.zeros_(self.where[-1].bias)
            self._init_prior(config)
            self.film = nn.Linear(config.action_features, 2 * cin)
            self.head_fc = nn.Sequential(
                nn.Linear(2 * cin, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, config.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(config.hidden, 1),
            )
        else:
            raise ValueError(f"unknown action fusion {config.fusion!r} (attention or add)")

    def _init_prior(self, config: QNetConfig) -> None:
        m = config.merge_size
        rows, cols = torch.meshgrid(torch.arange(m) + 0.5, torch.arange(m) + 0.5, indexing="ij")
        self.register_buffer("cell_rows", rows.reshape(-1).float(), persistent=False)
        self.register_buffer("cell_cols", cols.reshape(-1).float(), persistent=False)
        self.has_prior = config.camera is not None
        if self.has_prior:
            cam = config.camera.with_size(config.image_size)
            proj = TablePlaneProjector(cam)
            k = proj.intrinsics
            self.register_buffer("cam_rotation", torch.tensor(proj.rotation, dtype=torch.float32), persistent=False)
            self.register_buffer("cam_position", torch.tensor(proj.position, dtype=torch.float32), persistent=False)
            self.register_buffer(
                "cam_intrinsics",
                torch.tensor([k.fx, k.fy, k.cx, k.cy, k.width, k.height], dtype=torch.float32),
                persistent=False,
            )

    def attention_prior(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-weights (B, N, m*m) of a Gaussian around the feature cell the grasp point projects to."""
        if not self.has_prior:
            return torch.zeros(*actions.shape[:2], self.cell_rows.numel(), device=actions.device)
        z = torch.full_like(actions[..., :1], self.config.prior_height)
        pts = torch.cat([actions[..., :2], z], dim=-1) - self.cam_position
        cam = pts @ self.cam_rotation  # optical frame: x right, y down, z forward
        fx, fy, cx, cy, w, h = self.cam_intrinsics
        m = self.config.merge_size
        col = (fx * cam[..., 0] / cam[..., 2] + cx) * (m / w)
        row = (fy * cam[..., 1] / cam[..., 2] + cy) * (m / h)
        d2 = (self.cell_cols - col[..., None]) ** 2 + (self.cell_rows - row[..., None]) ** 2
        return -d2 / (2 * self.config.prior_sigma**2)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-0.5, 0.5], channels-last in memory."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
        return x.contiguous(memory_format=torch.channels_last)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image features before the action merge, (B, C, m, m); ``images`` as from ``preprocess``."""
        return self.encoder(images)

    def head(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B, N) of N actions per image: features (B, C, m, m), actions (B, N, 4)."""
        b, n = actions.shape[:2]
        a = encode_actions(actions, self.config.bounds, self.config.use_z)
        if self.config.fusion == "add":  # QT-Opt: broadcast-add the action embedding to the feature map
            merged = features.unsqueeze(1) + self.action_mlp(a)[..., None, None]  # (B, N, C, m, m)
            return self.head_fc(self.head_conv(merged.flatten(0, 1))).view(b, n)
        # attention: the action picks where to look (a softmax over the map's cells), the features found
        # there are modulated by the action (FiLM) and scored together with the image's global features.
        flat = features.flatten(2)  # (B, C, m*m)
        weights = torch.softmax(self.attention_prior(actions) + self.where(a), dim=-1)  # (B, N, m*m)
        local = torch.einsum("bnk,bck->bnc", weights, flat)
        scale, shift = self.film(a).chunk(2, dim=-1)
        glob = flat.mean(-1, keepdim=True).transpose(1, 2).expand(b, n, -1)
        h = torch.cat([local * (1 + scale) + shift, glob], dim=-1)
        return self.head_fc(h).squeeze(-1)

    def forward(self, images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B,) for one action per image; images preprocessed, actions (B, 4)."""
        return self.head(self.encode(images), actions[:, None, :])[:, 0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def as_image_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch of uint8 HxWx3 images (numpy or torch) as a preprocessed float tensor."""
    t = torch.as_tensor(images)
    if t.dim() == 3:
        t = t[None]
    if t.dtype != torch.uint8 or t.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (..., H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return QNetwork.preprocess(t.to(device))
