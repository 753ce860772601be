"""CycleGAN's networks (Zhu et al. 2017), sized for small images: a ResNet generator and a PatchGAN
discriminator. Images are float tensors (B, 3, H, W) in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rlcg.configio import ConfigError


@dataclass(frozen=True)
class GeneratorConfig:
    width: int = 16  # channels of the first layer (CycleGAN: 64)
    blocks: int = 4  # residual blocks at 1/4 resolution (CycleGAN: 6 for 128 px, 9 for 256 px)
    downsamplings: int = 2


@dataclass(frozen=True)
class DiscriminatorConfig:
    # CycleGAN's 70x70 PatchGAN: at 64 px each logit sees nearly the whole image. The earlier default
    # (width 32, 2 layers, 34x34 patches) let rl-cyclegan's G write cues into G(x) that Q_real learned
    # and real images lack: rl-cyclegan 69.3% against 73.5% over two seeds in pseudo-real (docs/results.md).
    width: int = 64
    layers: int = 3  # stride-2 layers: 2 gives 34x34 patches, 3 gives 70x70

    def check_image_size(self, size: int) -> None:
        """ConfigError if ``size`` x ``size`` images are too small for ``layers``: after the stride-2
        layers the last normalised map needs more than one element."""
        if size // 2**self.layers - 1 < 2:
            most = max(n for n in range(1, 12) if size // 2**n - 1 >= 2) if size >= 12 else 0
            raise ConfigError(
                f"{self.layers} discriminator layers are too many for {size}x{size} images (at most {most})"
            )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-3 (CycleGAN's notation), tanh output."""

    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        w = cfg.width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        ch = w
        for _ in range(cfg.downsamplings):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(cfg.blocks)]
        for _ in range(cfg.downsamplings):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1),
                nn.InstanceNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake logits, one per overlapping image patch."""

    def __init__(self, cfg: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        w = cfg.width
        layers: list[nn.Module] = [nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = w
        for _ in range(cfg.layers - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.InstanceNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, ch * 2, 4, 1, 1), nn.InstanceNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ch * 2, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """CycleGAN's initialisation: N(0, 0.02) conv weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
