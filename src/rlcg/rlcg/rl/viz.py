"""Pictures of what a Q-function thinks: heatmaps over the camera image."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from rlcg.policies import Decision
from rlcg.rl.policy import LearnedPolicy
from rlcg.sim.camera import TablePlaneProjector


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to RGB (a perceptually ordered dark-blue -> yellow ramp), uint8."""
    stops = np.array(
        [[0.05, 0.03, 0.35], [0.15, 0.35, 0.65], [0.15, 0.65, 0.55], [0.55, 0.80, 0.25], [0.99, 0.90, 0.15]]
    )
    v = np.clip(values, 0, 1) * (len(stops) - 1)
    i = np.minimum(v.astype(int), len(stops) - 2)
    f = (v - i)[..., None]
    return ((stops[i] * (1 - f) + stops[i + 1] * f) * 255).astype(np.uint8)


def q_overlay(
    policy: LearnedPolicy, image: np.ndarray, decision: Decision, scale: int = 6, alpha: float = 0.55
) -> Image.Image:
    """The camera image with Q (best yaw) blended over the workspace and the chosen grasp drawn as the
    line between the two fingers, plus a colour bar; upscaled ``scale`` times."""
    heat = policy.q_heatmap(image)
    h, w = image.shape[:2]
    rgb = image.astype(np.float32)
    inside = np.isfinite(heat)
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * colormap(heat[inside]).astype(np.float32)
    big = Image.fromarray(rgb.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(big)
    camera = policy.camera
    if camera is not None:
        import dataclasses

        proj = TablePlaneProjector(dataclasses.replace(camera, width=w, height=h))
        x, y, yaw = decision.action[:3]
        half = 0.055  # half the gripper opening (config/robot.yaml max_opening / 2)
        across = np.array([-math.sin(yaw), math.cos(yaw)])
        ends = np.array([[x, y], [x, y]]) + np.array([half, -half])[:, None] * across
        uv = proj.project(np.column_stack([ends, np.full(2, policy.floor_z)])) * scale
        draw.line([tuple(uv[0]), tuple(uv[1])], fill=(255, 40, 40), width=max(2, scale // 2))
        for u, v in uv:
            r = max(2, scale // 2)
            draw.ellipse([u - r, v - r, u + r, v + r], outline=(255, 255, 255), width=1)
    bar_w = 12
    canvas = Image.new("RGB", (big.width + bar_w + 46, big.height), (255, 255, 255))
    canvas.paste(big, (0, 0))
    ramp = colormap(np.linspace(1, 0, big.height)[:, None].repeat(bar_w, 1))
    canvas.paste(Image.fromarray(ramp), (big.width + 4, 0))
    d = ImageDraw.Draw(canvas)
    d.text((big.width + bar_w + 8, 0), "Q=1", fill=(0, 0, 0))
    d.text((big.width + bar_w + 8, big.height - 12), "Q=0", fill=(0, 0, 0))
    d.text((4, 4), f"Q={decision.q_value:.2f}", fill=(255, 255, 255))
    return canvas
