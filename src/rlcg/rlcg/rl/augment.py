"""Photometric augmentation of Q-network inputs: a different look for every image, the same geometry.

A Q-network trained on one generator's translations can key on what that generator paints (its
colours, its texture, its sharpness) rather than on where the objects are. Redrawing each image's
colour balance, brightness, contrast, sharpness and sensor noise leaves it only the cues that
survive all of them. Nothing moves in the image: a grasp is placed from the picture, and a shift
of one pixel at 64x64 is about half a centimetre in the bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PhotometricAugment:
    """Ranges drawn uniformly per image; images in the Q-network's range [-0.5, 0.5]."""

    channel_gain: float = 0.15  # each channel scaled by 1 +- this (colour cast)
    brightness: float = 0.08  # added to every pixel, +- this (about 20 grey levels)
    contrast: float = 0.25  # distance from the image's mean scaled by 1 +- this
    blur_sigma: float = 1.0  # Gaussian blur of sigma in [0, this] pixels
    noise_std: float = 0.03  # per-pixel Gaussian noise of std in [0, this] (up to about 8 grey levels)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented copy of ``images`` (B, 3, H, W); the draws come from ``generator`` (on the CPU)."""
        b, c = images.shape[:2]

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(images.device, images.dtype)

        out = images
        if self.blur_sigma > 0:
            out = gaussian_blur(out, uniform(b) * self.blur_sigma)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        contrast = 1 + self.contrast * (2 * uniform(b, 1, 1, 1) - 1)
        gain = 1 + self.channel_gain * (2 * uniform(b, c, 1, 1) - 1)
        shift = self.brightness * (2 * uniform(b, 1, 1, 1) - 1)
        out = ((out - mean) * contrast + mean + 0.5) * gain - 0.5 + shift
        if self.noise_std > 0:
            noise = torch.randn(out.shape, generator=generator).to(images.device, images.dtype)
            out = out + noise * (uniform(b, 1, 1, 1) * self.noise_std)
        return out.clamp(-0.5, 0.5).contiguous(memory_format=torch.channels_last)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Blur each image (B, C, H, W) with its own sigma (B,), separably; sigma 0 leaves it unchanged."""
    b, c, h, w = images.shape
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    # sigma 0 would divide by zero: a tiny sigma puts all the weight on the centre tap instead
    s = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    kernel = kernel.repeat_interleave(c, dim=0)  # one kernel per (image, channel), as grouped convolution wants
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)
