"""The CUDA paths, where a GPU is lent: every method trains on the GPU (float32, bf16 autocast, and
channels_last with fused Adam), its checkpoints load on the CPU and give the GPU's Q-values there,
a GPU run resumes as if never stopped, Q-learning on the GPU learns, and the CEM policy chooses on
the GPU what it chooses on the CPU. CI has no GPU: these skip there and say so; scripts/gpu_check.sh
runs them (and the commands and benchmarks on real data) on a lent GPU.
"""

from __future__ import annotations

import os

# cuBLAS keeps its sums in a fixed order only with this set before CUDA starts (the resume checks)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import pytest
import torch
from test_gan import _trainer as gan_trainer
from test_qlearning import _trainer as q_trainer

from rlcg.gan.trainer import load_generator
from rlcg.policies import Observation
from rlcg.rl.policy import load_policy

# RLCG_TEST_DEVICE=cpu runs the same checks on the CPU: a dry run of scripts/gpu_check.sh before a GPU is lent
DEVICE = os.environ.get("RLCG_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="no CUDA device on this machine (scripts/gpu_check.sh runs these on a GPU)",
)

# TF32 convolutions (cuDNN's default on the GPU) keep about 3 decimal digits: Q's probabilities on the
# GPU and on the CPU agree to a few thousandths, not to float32's last bit.
Q_ATOL = 5e-3
GAN_OPTIONS = {
    "float32": {},
    "bf16": {"bf16": True},
    "bf16+channels_last+fused_adam": {"bf16": True, "channels_last": True, "fused_adam": True},
}


@pytest.fixture
def deterministic_cuda():
    """cuDNN's and torch's deterministic kernels, so that two GPU runs of the same steps agree."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    algorithms = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(algorithms[0], warn_only=algorithms[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _probe(size: int, n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` camera-like images and 16 in-workspace grasps to read a Q-network at."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    actions = np.column_stack(
        [rng.uniform(0.5, 0.7, 16), rng.uniform(-0.1, 0.1, 16), rng.uniform(-1, 1, 16), np.zeros(16)]
    ).astype(np.float32)
    return images, actions


def _q_values(policy, images: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return np.stack([policy.q_values(image, actions) for image in images])


def _on_device(module: torch.nn.Module, device: str = DEVICE) -> bool:
    return all(p.device.type == torch.device(device).type for p in module.parameters())


@pytest.mark.parametrize("options", GAN_OPTIONS.values(), ids=GAN_OPTIONS.keys())
@pytest.mark.parametrize("method", ["gan", "cyclegan", "rl-cyclegan"])
def test_every_gan_method_trains_on_the_gpu_and_its_policy_reads_the_same_on_the_cpu(tmp_path, method, options):
    trainer = gan_trainer(tmp_path, method=method, steps=3, device=DEVICE, real_rl=method == "rl-cyclegan", **options)
    assert all(_on_device(net) for net in trainer.nets.values())
    history = trainer.fit(progress=False)
    assert len(history) == 3
    for stats in history:
        assert all(np.isfinite(v) for v in stats.values()), stats
    images, actions = _probe(32)
    on_gpu = load_policy(tmp_path / "policy", device=DEVICE)
    on_cpu = load_policy(tmp_path / "policy")
    assert _on_device(on_gpu.qnet) and _on_device(on_cpu.qnet, "cpu")
    np.testing.assert_allclose(_q_values(on_gpu, images, actions), _q_values(on_cpu, images, actions), atol=Q_ATOL)
    generator = load_generator(tmp_path)  # a GPU run's G, on the CPU
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        on_cpu_g = generator(x)
        on_gpu_g = generator.to(DEVICE)(x.to(DEVICE)).cpu()
    np.testing.assert_allclose(on_gpu_g.numpy(), on_cpu_g.numpy(), atol=Q_ATOL)


@pytest.mark.parametrize("options", GAN_OPTIONS.values(), ids=GAN_OPTIONS.keys())
def test_a_gpu_gan_run_resumes_as_if_never_stopped(tmp_path, options, deterministic_cuda):
    # the Adam moments (fused ones keep their step count on the GPU), the image pools and the
    # RNGs must come back onto the GPU from a CPU-side safetensors file
    straight = gan_trainer(tmp_path / "a", steps=4, device=DEVICE, **options)
    straight.fit(progress=False)
    killed = gan_trainer(tmp_path / "b", steps=4, device=DEVICE, **options)
    for _ in range(2):
        killed.train_step()
    killed.save()
    resumed = gan_trainer(tmp_path / "b", steps=4, device=DEVICE, resume=True, **options)
    assert resumed.step == 2 and all(_on_device(net) for net in resumed.nets.values())
    resumed.fit(progress=False)
    for name in straight.nets:
        for p, q in zip(straight.nets[name].parameters(), resumed.nets[name].parameters()):
            assert torch.allclose(p, q, atol=1e-5), name


def test_q_learning_on_the_gpu_learns_and_resumes(tmp_path, deterministic_cuda):
    trainer = q_trainer(tmp_path / "learn", 300, device=DEVICE)
    history = trainer.fit(progress=False)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["accuracy"] > 0.9 and first["accuracy"] < 0.75
    straight = q_trainer(tmp_path / "a", 40, device=DEVICE)
    straight.fit(progress=False)
    part = q_trainer(tmp_path / "b", 40, device=DEVICE)
    for _ in range(20):
        part.train_step()
    part.save()
    resumed = q_trainer(tmp_path / "b", 40, resume=True, device=DEVICE)
    assert resumed.step == 20 and _on_device(resumed.qnet)
    resumed.fit(progress=False)
    for p, q in zip(straight.qnet.parameters(), resumed.qnet.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_the_shipped_policy_chooses_on_the_gpu_what_it_chooses_on_the_cpu():
    on_gpu, on_cpu = load_policy("default", device=DEVICE), load_policy("default")
    assert _on_device(on_gpu.qnet)
    images, actions = _probe(on_cpu.image_size, n=8, seed=1)
    np.testing.assert_allclose(_q_values(on_gpu, images, actions), _q_values(on_cpu, images, actions), atol=Q_ATOL)
    for i, image in enumerate(images):
        # CEM draws its samples on the CPU from the same seed; only the scores come from the GPU,
        # so the choices differ only where TF32 rounding reorders near-equal samples
        gpu = on_gpu.act(Observation(image, on_gpu.bounds, np.random.default_rng(i)))
        cpu = on_cpu.act(Observation(image, on_cpu.bounds, np.random.default_rng(i)))
        bounds = on_gpu.bounds
        assert np.all((bounds.low <= gpu.action) & (gpu.action <= bounds.high)), gpu.action
        q_of_gpu_choice = on_cpu.q_values(image, gpu.action[None].astype(np.float32))[0]
        assert abs(gpu.q_value - q_of_gpu_choice) < Q_ATOL  # the GPU's Q of its choice is the CPU's
        assert q_of_gpu_choice > cpu.q_value - 2 * Q_ATOL  # and the choice is as good as the CPU's
