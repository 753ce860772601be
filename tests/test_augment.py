"""Photometric augmentation of Q-network inputs (rlcg.rl.augment)."""

from __future__ import annotations

import pytest
import torch

from rlcg.rl.augment import PhotometricAugment, gaussian_blur


def _scene(b: int = 6, size: int = 32) -> torch.Tensor:
    """Grey trays with one bright square each, at a different place per image, in [-0.5, 0.5]."""
    images = torch.full((b, 3, size, size), -0.1)
    for i in range(b):
        r, c = 4 + 3 * i, 20 - 2 * i
        images[i, :, r : r + 6, c : c + 6] = 0.3
    return images


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """Centroid (row, col) of each image's brightest pixels: where the object is."""
    grey = images.mean(dim=1).flatten(1)
    # half-way between the background (the median) and the object (the square covers 3.5% of the image)
    threshold = (grey.median(dim=1).values + grey.quantile(0.99, dim=1)) / 2
    mask = (grey > threshold[:, None]).float().view(images.shape[0], *images.shape[2:])
    grey = grey.view_as(mask)
    rows = torch.arange(grey.shape[1], dtype=torch.float32)[None, :, None]
    cols = torch.arange(grey.shape[2], dtype=torch.float32)[None, None, :]
    n = mask.sum(dim=(1, 2))
    return torch.stack([(mask * rows).sum(dim=(1, 2)) / n, (mask * cols).sum(dim=(1, 2)) / n], dim=1)


def test_augment_redraws_the_look_of_each_image_within_range_and_leaves_the_objects_in_place():
    images = _scene()
    out = PhotometricAugment()(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= -0.5 and out.max() <= 0.5
    assert torch.equal(images, _scene())  # the input is not changed in place
    # every image gets its own draw: the change of the mean colour differs between images
    change = (out - images).mean(dim=(2, 3))
    assert torch.unique(change.round(decimals=4), dim=0).shape[0] == len(images)
    assert float((out - images).abs().mean()) > 0.01
    # geometry untouched: each object's centroid stays within a fraction of a pixel
    assert torch.allclose(_centroid(out), _centroid(images), atol=0.5)


def test_augment_is_reproducible_from_its_generator_and_off_when_its_ranges_are_zero():
    images = _scene()
    aug = PhotometricAugment()
    a = aug(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(images, torch.Generator().manual_seed(4)))
    none = PhotometricAugment(channel_gain=0, brightness=0, contrast=0, blur_sigma=0, noise_std=0)
    assert torch.allclose(none(images, torch.Generator().manual_seed(3)), images, atol=1e-6)


def test_gaussian_blur_keeps_flat_images_and_mean_brightness_and_spreads_an_edge_by_sigma():
    flat = torch.full((2, 3, 16, 16), 0.2)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.0, 1.0])), flat, atol=1e-6)
    dot = torch.zeros(2, 1, 17, 17)
    dot[:, :, 8, 8] = 1.0
    blurred = gaussian_blur(dot, torch.tensor([0.0, 1.0]))
    assert torch.equal(blurred[0], dot[0])  # sigma 0: unchanged
    assert float(blurred[1].sum()) == pytest.approx(1.0, abs=1e-5)  # no light lost away from the borders
    # sigma 1: separable, so the centre keeps the square of the centre tap's normalised weight
    taps = torch.exp(-0.5 * torch.arange(-2.0, 3.0) ** 2)
    assert float(blurred[1, 0, 8, 8]) == pytest.approx(float((1 / taps.sum()) ** 2), rel=1e-5)
    assert float(blurred[1, 0, 8, 9]) == pytest.approx(float(taps[3] / taps.sum() ** 2), rel=1e-5)
