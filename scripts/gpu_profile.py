"""Where an rl-cyclegan training step's time goes on a GPU: wall time per step (timed without the
profiler) against the time the GPU spends in kernels (torch.profiler, the same number of steps), and
the number of kernels launched, on `rlcg bench train`'s synthetic batches.
A GPU busy for a small part of the step is waiting for Python to launch work (launch-bound): a larger
batch then costs little more per step. One JSON object per batch size on stdout; the busiest kernels
on stderr.

    PYTHONPATH=src/rlcg python3 scripts/gpu_profile.py [--device cuda] [--batch-sizes 8 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from rlcg.gan.commands import SyntheticTransitions
from rlcg.gan.trainer import GanTrainConfig, RLCycleGANTrainer
from rlcg.models.qnet import QNetConfig
from rlcg.rl.qtopt import WeightedSources
from rlcg.sim.config import SimConfig


def profile_steps(device: str, batch_size: int, steps: int, method: str = "rl-cyclegan") -> dict:
    qcfg = QNetConfig.for_world(SimConfig.load())
    data = WeightedSources([(SyntheticTransitions(), 1.0)])
    cfg = GanTrainConfig(method=method, batch_size=batch_size, q_batch_size=max(32, batch_size))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RLCycleGANTrainer(cfg, qcfg, data, data, tmp, device=device)
        for _ in range(3):
            trainer.train_step()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):  # the profiler's own start-up
            trainer.train_step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0  # the profiler slows the host: the busy fraction is of this
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            torch.cuda.synchronize()
            profiled_wall = time.perf_counter() - t0
    # GPU work only: annotations (e.g. Optimizer.step#Adam.step) span kernels that are counted themselves
    kernels = [
        e
        for e in prof.key_averages()
        if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
    ]
    busy_us = sum(e.self_device_time_total for e in kernels)
    launches = sum(e.count for e in kernels)
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:8]
    for e in top:
        print(
            f"b{batch_size} {e.self_device_time_total / steps / 1e3:8.3f} ms/step {e.count // steps:5d}x {e.key[:90]}",
            file=sys.stderr,
        )
    return {
        "method": method,
        "batch_size": batch_size,
        "steps": steps,
        "wall_ms_per_step": 1e3 * wall / steps,
        "profiled_wall_ms_per_step": 1e3 * profiled_wall / steps,
        "gpu_busy_ms_per_step": busy_us / 1e3 / steps,
        "gpu_busy_fraction": busy_us / 1e6 / wall,
        "kernels_per_step": launches / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_profile: no CUDA device on this machine")
    for b in args.batch_sizes:
        print(json.dumps(profile_steps(args.device, b, args.steps)))


if __name__ == "__main__":
    main()
