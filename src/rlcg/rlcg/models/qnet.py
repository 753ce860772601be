"""The grasp Q-function Q(s, a): a convolutional network over the camera image with the grasp
action fused in, after QT-Opt (Kalashnikov et al. 2018), scaled down for 64x64 images.

QT-Opt broadcast-adds an embedding of the action to a convolutional feature map midway through
the network and continues with convolutions and fully connected layers to a sigmoid. Here the
action is merged late, at an 8x8 map: everything before the merge depends on the image alone, so
the cross-entropy method encodes an image once and scores all its candidate grasps with the small
post-merge head (``encode`` + ``head``), instead of running the full network per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlcg.sim.config import WorkspaceBounds


@dataclass(frozen=True)
class QNetConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 64)  # stem, then one entry per stride-2 stage
    merge_size: int = 8  # spatial size of the map the action is added to
    head_channels: int = 32
    hidden: int = 64
    use_z: bool = False  # whether the action's z offset is an input (and searched by CEM)
    bounds: WorkspaceBounds = WorkspaceBounds()

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
        layers.append(nn.AdaptiveAvgPool2d(config.merge_size))
        self.encoder = nn.Sequential(*layers)
        self.feature_channels = cin
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
        emb = self.action_mlp(encode_actions(actions, self.config.bounds, self.config.use_z))  # (B, N, C)
        merged = features.unsqueeze(1) + emb[..., None, None]  # (B, N, C, m, m)
        merged = merged.flatten(0, 1)
        return self.head_fc(self.head_conv(merged)).view(b, n)

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
