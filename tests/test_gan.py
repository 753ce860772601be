"""RL-CycleGAN: each loss on a hand-made case, gradients reach exactly the documented parameters,
every method trains, resume continues a killed run, and DDP keeps ranks in step."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlcg.configio import to_dict
from rlcg.errors import RlcgError
from rlcg.gan import losses
from rlcg.gan.trainer import (
    GanTrainConfig,
    ImagePool,
    LossWeights,
    RLCycleGANTrainer,
    load_generator,
    lr_factors,
    objective_changes,
    q_tail_lr_factor,
    to_gan_range,
)
from rlcg.models.gan import DiscriminatorConfig, GeneratorConfig
from rlcg.models.qnet import QNetConfig
from rlcg.rl.qtopt import WeightedSources

TINY_Q = QNetConfig(image_size=32, channels=(8, 16), merge_size=8)


# ---------------------------------------------------------------------- losses
def _six(values):
    return losses.SixQ(*[torch.tensor([v]) for v in values])


def test_rl_scene_loss_is_zero_when_the_six_q_values_agree_and_grows_with_disagreement():
    assert losses.rl_scene_loss(_six([0.7] * 6)) == 0
    # one q'_x off by delta enters two pairs: 2 delta^2
    small = losses.rl_scene_loss(_six([0.7, 0.8, 0.7, 0.3, 0.3, 0.3]))
    large = losses.rl_scene_loss(_six([0.7, 0.9, 0.7, 0.3, 0.3, 0.3]))
    assert float(small) == pytest.approx(2 * 0.1**2)
    assert float(large) == pytest.approx(2 * 0.2**2)
    # the real triple counts the same way
    assert float(losses.rl_scene_loss(_six([0.5, 0.5, 0.5, 0.2, 0.2, 0.6]))) == pytest.approx(2 * 0.4**2)


def test_six_q_values_read_the_paper_s_network_image_and_action_for_each_value():
    calls = []

    def q_value(net, images, actions):
        calls.append((net, images, actions))
        return torch.zeros(1)

    images = {name: object() for name in ("x", "G(x)", "F(G(x))", "y", "F(y)", "G(F(y))")}
    a_x, a_y = object(), object()
    losses.six_q_values(q_value, images, a_x, a_y)
    expected = [  # q_x, q'_x, q''_x, q_y, q'_y, q''_y
        ("Q_sim", "x", a_x),
        ("Q_real", "G(x)", a_x),
        ("Q_sim", "F(G(x))", a_x),
        ("Q_real", "y", a_y),
        ("Q_sim", "F(y)", a_y),
        ("Q_real", "G(F(y))", a_y),
    ]
    assert calls == [(net, images[name], a) for net, name, a in expected]


def test_cycle_and_gan_losses_on_hand_made_cases():
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert losses.cycle_loss(x, x, y, y) == 0
    assert float(losses.cycle_loss(x, x + 0.5, y, y)) == pytest.approx(0.25)
    assert float(losses.cycle_loss(x, x + 0.5, y, y, kind="l1")) == pytest.approx(0.5)
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert losses.gan_discriminator_loss(ones, zeros, "lsgan") == 0  # a perfect discriminator
    assert losses.gan_generator_loss(ones, "lsgan") == 0  # a generator that fools it
    assert losses.gan_generator_loss(zeros, "lsgan") == 1
    assert float(losses.gan_generator_loss(torch.full((4,), 20.0), "bce")) < 1e-6
    with pytest.raises(ValueError):
        losses.gan_generator_loss(ones, "wgan")


def test_identity_loss_on_hand_made_cases():
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert losses.identity_loss(y, y, x, x) == 0  # generators that leave their own domain alone
    assert float(losses.identity_loss(y, y + 0.5, x, x)) == pytest.approx(0.25)
    assert float(losses.identity_loss(y, y, x, x - 0.5, kind="l1")) == pytest.approx(0.5)
    assert float(losses.identity_loss(y, y + 0.5)) == pytest.approx(0.25)  # gan: G's term alone


# ---------------------------------------------------------------------- tiny data
class TinyTransitions:
    def __init__(self, seed: int, brightness: int):
        rng = np.random.default_rng(seed)
        self.images = np.clip(rng.integers(0, 120, (32, 32, 32, 3)) + brightness, 0, 255).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, b, rng):
        i = rng.integers(0, len(self), b)
        a = np.column_stack(
            [rng.uniform(0.5, 0.7, b), rng.uniform(-0.1, 0.1, b), rng.uniform(-1, 1, b), np.zeros(b)]
        ).astype(np.float32)
        return SimpleNamespace(
            image=self.images[i],
            next_image=self.images[i],
            action=a,
            reward=rng.integers(0, 2, b).astype(np.float32),
            done=np.ones(b, bool),
        )


TINY_D = DiscriminatorConfig(width=8)
TINY_G = GeneratorConfig(width=4, blocks=1)


def _trainer(
    tmp_path,
    method="rl-cyclegan",
    steps=3,
    resume=False,
    discriminator=TINY_D,
    init_q=None,
    fresh_q_real=False,
    init_run=None,
    generator=TINY_G,
    qnet=TINY_Q,
    device="cpu",
    **kw,
):
    cfg = GanTrainConfig(
        method=method,
        steps=steps,
        batch_size=4,
        generator=generator,
        discriminator=discriminator,
        image_pool=4,
        grid_every=2,
        checkpoint_every=2,
        log_every=1,
        **kw,
    )
    sim = WeightedSources([(TinyTransitions(0, 0), 1)])
    real = WeightedSources([(TinyTransitions(1, 100), 1)])
    return RLCycleGANTrainer(
        cfg,
        qnet,
        sim,
        real,
        tmp_path,
        device=device,
        resume=resume,
        init_q=init_q,
        fresh_q_real=fresh_q_real,
        init_run=init_run,
    )


def _grads(module: torch.nn.Module) -> set[bool]:
    return {p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()}


def test_gradients_reach_exactly_the_documented_parameters(tmp_path):
    t = _trainer(tmp_path)
    nets = t.nets
    sim, real = t._batch(t.sim_data), t._batch(t.real_data)

    def zero():
        for net in nets.values():
            net.zero_grad(set_to_none=True)

    g_loss, out, stats = t.generator_loss(sim, real)
    assert stats["loss_rl_scene"] >= 0
    g_loss.backward()
    assert _grads(nets["G"]) == {True} and _grads(nets["F"]) == {True}
    for frozen in ("D_X", "D_Y", "Q_sim", "Q_real"):  # L_GAN(gen side) and L_RL-scene do not move them
        assert _grads(nets[frozen]) == {False}, frozen
    zero()
    d_loss, d_parts = t.discriminator_loss(sim, real, out)
    assert set(d_parts) == {"D_X", "D_Y"} and torch.equal(d_loss, d_parts["D_Y"] + d_parts["D_X"])
    d_parts["D_Y"].backward(retain_graph=True)  # each part is its own discriminator's L_GAN
    assert _grads(nets["D_Y"]) == {True} and _grads(nets["D_X"]) == {False}
    d_parts["D_X"].backward()
    assert _grads(nets["D_X"]) == {True} and _grads(nets["D_Y"]) == {True}
    assert _grads(nets["G"]) == {False} and _grads(nets["F"]) == {False}
    zero()
    q_loss, parts = t.q_loss(sim, real, out)
    assert set(parts) == {"Q_real", "Q_sim", "Q_sim:cycled"}  # + rl_scene with rl_scene_trains_q
    q_loss.backward()
    assert True in _grads(nets["Q_sim"]) and True in _grads(nets["Q_real"])
    for frozen in ("G", "F", "D_X", "D_Y"):  # L_RL works on detached translations
        assert _grads(nets[frozen]) == {False}, frozen


@pytest.mark.parametrize("method", ["gan", "rl-cyclegan"])
def test_identity_term_is_off_by_default_and_adds_its_weighted_loss_to_the_generators_only(tmp_path, method):
    plain = _trainer(tmp_path / "plain", method=method)
    sim, real = plain._batch(plain.sim_data), plain._batch(plain.real_data)
    _, out, stats = plain.generator_loss(sim, real)
    assert "G(y)" not in out and "loss_identity" not in stats  # no extra generator passes when off

    t = _trainer(tmp_path / "idt", method=method, weights=LossWeights(identity=5.0))
    t.gens.load_state_dict(plain.gens.state_dict())
    sim, real = t._batch(t.sim_data), t._batch(t.real_data)
    g_loss, out, stats = t.generator_loss(sim, real)
    x, y = to_gan_range(sim["image"]), to_gan_range(real["image"])
    expected = losses.image_distance(t.gens.G(y), y) + (
        losses.image_distance(t.gens.F(x), x) if method == "rl-cyclegan" else 0
    )
    assert float(stats["loss_identity"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(stats["loss_identity"]) > 0
    without = float(stats["loss_generators"]) - 5.0 * float(stats["loss_identity"])
    t.gens.zero_grad(set_to_none=True)
    g_loss.backward()
    for frozen in ("D_Y", "Q_real"):
        assert _grads(t.nets[frozen]) == {False}, frozen
    assert _grads(t.nets["G"]) == {True}
    # the other terms are those of the run without the identity term, on the same batch and weights
    _, _, plain_stats = plain.generator_loss(sim, real)
    assert without == pytest.approx(float(plain_stats["loss_generators"]), rel=1e-4)


@pytest.mark.parametrize("real_rl", [False, True])
def test_q_real_augment_redraws_only_q_real_s_inputs_and_is_off_by_default(tmp_path, real_rl):
    plain = _trainer(tmp_path / "plain", real_rl=real_rl)
    aug = _trainer(tmp_path / "aug", real_rl=real_rl, q_real_augment=True)
    aug.gens.load_state_dict(plain.gens.state_dict())
    aug.q_targets.load_state_dict(plain.q_targets.state_dict())
    sim, real = plain._batch(plain.sim_data), plain._batch(plain.real_data)
    gx = plain.gens.G(to_gan_range(sim["image"])).detach()
    translated = {"G(x)": gx, "F(G(x))": plain.gens.F(gx).detach()}
    off = {name: (im, a, y) for name, im, a, y in plain._td_terms(sim, real, translated)}
    on = {name: (im, a, y) for name, im, a, y in aug._td_terms(sim, real, translated)}
    assert set(on) == set(off) == {"Q_real", "Q_sim", "Q_sim:cycled"} | ({"Q_real:real"} if real_rl else set())
    # off: Q_real learns from G(x) itself (and y itself)
    assert torch.equal(off["Q_real"][0], translated["G(x)"] * 0.5)
    if real_rl:
        assert torch.equal(off["Q_real:real"][0], real["image"])
    for name in on:
        image_on, image_off = on[name][0], off[name][0]
        assert torch.equal(on[name][1], off[name][1]) and torch.equal(on[name][2], off[name][2])  # actions, targets
        if name.startswith("Q_real"):  # a redrawn look, in range, close to the original on average
            assert not torch.equal(image_on, image_off)
            assert image_on.min() >= -0.5 and image_on.max() <= 0.5
            assert float((image_on - image_off).abs().mean()) < 0.15
        else:  # Q_sim, the consistency anchor, sees the sim images as they are
            assert torch.equal(image_on, image_off)
    # the draws are part of the run's random state, so a resumed run redraws what a whole one would
    state = aug.generator.get_state()
    first = aug._q_real_input(off["Q_real"][0])
    aug.generator.set_state(state)
    assert torch.equal(aug._q_real_input(off["Q_real"][0]), first)
    assert not GanTrainConfig().q_real_augment


def test_q_real_augment_option_reaches_the_gan_config_is_part_of_the_objective_and_needs_a_gan_method(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    assert build_gan_config(parser.parse_args(["--q-real-augment"]), "cyclegan", 2, 4).q_real_augment
    assert not build_gan_config(parser.parse_args([]), "cyclegan", 2, 4).q_real_augment
    assert objective_changes(to_dict(GanTrainConfig()), GanTrainConfig(q_real_augment=True)) == [
        "q_real_augment: False -> True"
    ]
    argv = ["train", "--sim-data", str(tmp_path), "--out", str(tmp_path / "run"), "--method", "sim-only"]
    for extra in (["--q-real-augment"], ["--lambda-identity", "5"]):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert f"--method sim-only does not use {extra[0]} (only cyclegan, gan, rl-cyclegan do)" in err
    assert not (tmp_path / "run").exists()


def test_a_resumed_image_pool_lives_on_the_training_device():
    """Checkpoints load to the CPU; the pool must hand its images to the device it trains on (the
    meta device stands in for a GPU: mixing it with CPU tensors fails the same way)."""
    saved = ImagePool(4, np.random.default_rng(0))
    saved.query(torch.rand(4, 3, 8, 8))
    pool = ImagePool(4, np.random.default_rng(0))
    pool.load_state(saved.state(), "meta")
    assert {im.device.type for im in pool.images} == {"meta"}
    assert pool.query(torch.rand(4, 3, 8, 8, device="meta")).device.type == "meta"


def test_torchrun_gives_each_process_its_own_gpu_or_a_clear_error(monkeypatch):
    """Under torchrun a CUDA device means the GPU of the process's LOCAL_RANK: an explicit index
    (every process on one GPU) and a process without a GPU are refused before the process group."""
    from rlcg.device import DeviceError
    from rlcg.gan.trainer import DistributedContext

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(DeviceError, match="--device cuda:0: under torchrun each process takes the GPU"):
        DistributedContext("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match="process 1 of this node has no GPU: 1 visible"):
        DistributedContext("cuda")
    assert not torch.distributed.is_initialized()


def test_train_refuses_options_its_method_would_ignore(tmp_path, capsys):
    """An option only other methods read, given with a non-default value, is refused before anything
    is read or written; its default value, or an option the method reads, passes this check."""
    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, unused_options

    argv = ["train", "--sim-data", str(tmp_path / "none"), "--out", str(tmp_path / "run")]
    refused = [
        ("sim-only", ["--real-data", str(tmp_path)], "--real-data"),
        ("randomized-sim", ["--gen-width", "32", "--bf16"], "--gen-width, --bf16"),
        ("sim-only", ["--lambda-rl-scene", "2"], "--lambda-rl-scene"),
        ("gan", ["--real-data", str(tmp_path), "--lambda-cycle", "5"], "--lambda-cycle"),
        ("gan", ["--real-data", str(tmp_path), "--cycle-loss", "l1"], "--cycle-loss"),
        ("cyclegan", ["--real-data", str(tmp_path), "--rl-scene-trains-q"], "--rl-scene-trains-q"),
    ]
    for method, extra, flags in refused:
        assert main([*argv, "--method", method, *extra]) == 2
        assert f"--method {method} does not use {flags} (only " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    parser.add_argument("--method")
    parser.add_argument("--real-data", nargs="+")
    allowed = [
        ["--method", "sim-only", "--lambda-cycle", "10"],  # the default value: nothing ignored
        ["--method", "gan", "--cycle-loss", "l1", "--lambda-identity", "5"],  # gan's identity term uses d
        ["--method", "rl-cyclegan", "--rl-scene-trains-q", "--lambda-rl-scene", "2", "--bf16", "--gen-width", "8"],
    ]
    for args in allowed:
        assert unused_options(parser.parse_args(args)) == []


def test_bf16_on_the_cpu_is_noted_as_slow(tmp_path, capsys):
    from rlcg.cli import main

    argv = ["train", "--method", "gan", "--sim-data", str(tmp_path / "none"), "--real-data", str(tmp_path / "none")]
    for device, noted in (("cpu", True), ("auto", not torch.cuda.is_available())):
        main([*argv, "--out", str(tmp_path / "run"), "--bf16", "--device", device])
        assert ("--bf16 on the CPU" in capsys.readouterr().err) == noted
    main([*argv, "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert "--bf16" not in capsys.readouterr().err


def test_rl_scene_trains_q_reaches_the_q_networks_and_not_the_generators(tmp_path):
    """--rl-scene-trains-q: the Q step adds L_RL-scene on detached images; its gradient alone
    reaches both Q-networks (never G or F) and a few Q steps on it reduce it."""

    t = _trainer(tmp_path, rl_scene_trains_q=True, weights=LossWeights(rl=0.0, rl_scene=1.0))
    nets = t.nets
    sim, real = t._batch(t.sim_data), t._batch(t.real_data)
    _, out, stats = t.generator_loss(sim, real)
    first = None
    for _ in range(15):
        t.opt_q.zero_grad(set_to_none=True)
        for net in nets.values():
            net.zero_grad(set_to_none=True)
        q_loss, parts = t.q_loss(sim, real, out)
        assert "rl_scene" in parts
        first = float(parts["rl_scene"].detach()) if first is None else first
        q_loss.backward()
        assert True in _grads(nets["Q_sim"]) and True in _grads(nets["Q_real"])
        for frozen in ("G", "F", "D_X", "D_Y"):
            assert _grads(nets[frozen]) == {False}, frozen
        t.opt_q.step()
    assert float(parts["rl_scene"].detach()) < first
    # the value in the Q step is the generator step's L_RL-scene, computed on the same images
    t2 = _trainer(tmp_path / "same", rl_scene_trains_q=True)
    _, out2, stats2 = t2.generator_loss(sim, real)
    _, parts2 = t2.q_loss(sim, real, out2)
    assert float(parts2["rl_scene"].detach()) == pytest.approx(float(stats2["loss_rl_scene"]), rel=1e-5)
    # with the option off the Q step has no RL-scene term
    _, parts3 = _trainer(tmp_path / "off", rl_scene_trains_q=False).q_loss(sim, real, out2)
    assert "rl_scene" not in parts3


def test_rl_scene_gradient_moves_the_generator_towards_consistency(tmp_path):
    """Only the RL-scene term (other weights 0): a few generator steps reduce it."""

    t = _trainer(tmp_path, weights=LossWeights(gan=0.0, cycle=0.0, rl_scene=1.0, rl=0.0))
    sim, real = t._batch(t.sim_data), t._batch(t.real_data)
    first = None
    for _ in range(15):
        loss, _, stats = t.generator_loss(sim, real)
        first = stats["loss_rl_scene"] if first is None else first
        t.opt_g.zero_grad()
        loss.backward()
        t.opt_g.step()
    assert stats["loss_rl_scene"] < first


@pytest.mark.parametrize("method", ["gan", "cyclegan", "rl-cyclegan"])
def test_every_gan_method_trains_and_exports_a_policy(tmp_path, method):
    from rlcg.rl.policy import load_policy

    t = _trainer(tmp_path, method=method, steps=3, real_rl=method == "rl-cyclegan")
    history = t.fit(progress=False)
    assert len(history) == 3 and all(np.isfinite(h["loss_generators"]) for h in history)
    policy = load_policy(tmp_path / "policy")
    assert policy.image_size == 32
    assert (tmp_path / "images" / "step-0000002.png").is_file()
    g = load_generator(tmp_path)
    assert g(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    "opts",
    [{}, dict(channels_last=True, fused_adam=True), dict(lr_schedule="linear-decay"), dict(q_real_average_from=1)],
    ids=["plain", "channels_last+fused_adam", "linear-decay", "q-real-average"],
)
def test_resume_after_a_kill(tmp_path, opts):
    # with the hot-path options the Adam moments must get the weights' memory layout back on loading;
    # with a decaying schedule the resumed steps must get the rates of the uninterrupted run
    straight = _trainer(tmp_path / "a", steps=4, **opts)
    straight.fit(progress=False)
    killed = _trainer(tmp_path / "b", steps=4, **opts)
    for _ in range(2):  # killed after its checkpoint at step 2
        killed.train_step()
    killed.save()
    resumed = _trainer(tmp_path / "b", steps=4, resume=True, **opts)
    assert resumed.step == 2
    resumed.fit(progress=False)
    assert resumed.nets.keys() == straight.nets.keys()
    for name in straight.nets:
        for p, q in zip(straight.nets[name].parameters(), resumed.nets[name].parameters()):
            assert torch.allclose(p, q, atol=1e-5), name
    assert resumed.q_real_averaged == straight.q_real_averaged


def test_resume_refuses_a_changed_objective_but_not_a_longer_run(tmp_path):
    _trainer(tmp_path, steps=2).fit(progress=False)
    with pytest.raises(RlcgError, match=r"rl_scene_trains_q: False -> True"):
        _trainer(tmp_path, steps=4, resume=True, rl_scene_trains_q=True)
    with pytest.raises(RlcgError, match=r"weights.rl_scene: 1.0 -> 10.0"):
        _trainer(tmp_path, steps=4, resume=True, weights=LossWeights(rl_scene=10.0))
    assert _trainer(tmp_path, steps=4, resume=True, channels_last=True, fused_adam=True).step == 2


def test_resume_refuses_another_q_network_and_fewer_steps_than_trained(tmp_path):
    _trainer(tmp_path, steps=3).fit(progress=False)
    with pytest.raises(RlcgError, match="Q-network"):
        _trainer(tmp_path, steps=3, resume=True, qnet=QNetConfig(image_size=32, channels=(8, 8), merge_size=8))
    with pytest.raises(RlcgError, match="trained 3 joint steps; --steps cannot be fewer"):
        _trainer(tmp_path, steps=2, resume=True, q_tail_steps=4)  # step 3 would count as the tail's first


def test_linear_decay_holds_the_rates_for_half_the_run_then_decays_them_to_zero(tmp_path):
    assert [lr_factors(GanTrainConfig(steps=4), s) for s in range(4)] == [(1.0, 1.0)] * 4
    decay = GanTrainConfig(steps=4, lr_schedule="linear-decay")
    assert [lr_factors(decay, s) for s in range(4)] == [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (0.5, 0.5)]
    t = _trainer(tmp_path, steps=4, lr_schedule="linear-decay")
    history = t.fit(progress=False)
    assert [h["lr_factor"] for h in history] == [1.0, 1.0, 1.0, 0.5]
    assert [h["lr_factor_q"] for h in history] == [1.0, 1.0, 1.0, 0.5]
    cfg = t.cfg
    assert [g["lr"] for opt in (t.opt_g, t.opt_d, t.opt_q) for g in opt.param_groups] == [
        cfg.lr_gan * 0.5,
        cfg.lr_gan * 0.5,
        cfg.lr_q * 0.5,
    ]
    # the schedule spans --steps: a resumed run may not stretch it, nor switch schedules
    with pytest.raises(RlcgError, match=r"steps: 4 -> 8"):
        _trainer(tmp_path, steps=8, resume=True, lr_schedule="linear-decay")
    with pytest.raises(RlcgError, match=r"lr_schedule: 'linear-decay' -> 'constant'"):
        _trainer(tmp_path, steps=4, resume=True)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        GanTrainConfig(lr_schedule="cosine")


def test_a_later_decay_start_decays_only_a_resumed_constant_run_s_last_stretch(tmp_path):
    later = GanTrainConfig(steps=6, lr_schedule="linear-decay", lr_decay_from=4)
    assert [lr_factors(later, s)[0] for s in range(6)] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    half = GanTrainConfig(steps=6, lr_schedule="linear-decay")  # None: CycleGAN's half
    assert [lr_factors(half, s)[0] for s in range(6)] == pytest.approx([1.0] * 4 + [2 / 3, 1 / 3])
    # a constant-rate run resumed at its step 2 decays its last two steps: the same parameters as a run
    # that had the schedule from the start, whose first two steps had the same rates
    straight = _trainer(tmp_path / "a", steps=4, lr_schedule="linear-decay", lr_decay_from=2)
    straight.fit(progress=False)
    _trainer(tmp_path / "b", steps=2).fit(progress=False)
    resumed = _trainer(tmp_path / "b", steps=4, resume=True, lr_schedule="linear-decay", lr_decay_from=2)
    history = resumed.fit(progress=False)
    assert [h["lr_factor"] for h in history[2:]] == [1.0, 0.5]
    for name in straight.nets:
        for p, q in zip(straight.nets[name].parameters(), resumed.nets[name].parameters()):
            assert torch.allclose(p, q, atol=1e-5), name
    # a decay that would have changed a trained step's rate is refused, as is stretching one begun
    _trainer(tmp_path / "c", steps=2).fit(progress=False)
    with pytest.raises(RlcgError, match=r"lr_decay_from: None -> 0.*lr_schedule: 'constant' -> 'linear-decay'"):
        _trainer(tmp_path / "c", steps=4, resume=True, lr_schedule="linear-decay", lr_decay_from=0)
    with pytest.raises(RlcgError, match=r"steps: 4 -> 8"):
        _trainer(tmp_path / "b", steps=8, resume=True, lr_schedule="linear-decay", lr_decay_from=2)
    with pytest.raises(ValueError, match="applies to the linear-decay schedule"):
        GanTrainConfig(steps=4, lr_decay_from=2)
    with pytest.raises(ValueError, match=r"a step in \[0, 4\)"):
        GanTrainConfig(steps=4, lr_schedule="linear-decay", lr_decay_from=4)


def test_lr_decay_from_option_reaches_the_config_and_needs_the_linear_decay(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(["--lr-schedule", "linear-decay", "--lr-decay-from", "1"])
    assert build_gan_config(args, "rl-cyclegan", 2, 4).lr_decay_from == 1
    assert build_gan_config(parser.parse_args([]), "rl-cyclegan", 2, 4).lr_decay_from is None
    argv = ["train", "--method", "rl-cyclegan", "--sim-data", str(tmp_path), "--real-data", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "run"), "--lr-decay-from", "1"]) == 2
    assert "--lr-decay-from applies with --lr-schedule linear-decay" in capsys.readouterr().err
    decay = ["--lr-schedule", "linear-decay", "--steps", "10"]
    assert main([*argv, "--out", str(tmp_path / "run"), *decay, "--lr-decay-from", "10"]) == 2
    assert "--lr-decay-from must be a step from 0 to 9" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_q_tail_trains_q_real_alone_on_the_frozen_generator_with_a_cosine_rate(tmp_path):
    from rlcg.rl.policy import load_policy

    t = _trainer(tmp_path, steps=2, q_tail_steps=3)
    for _ in range(2):
        t.train_step()
    before = {name: _params(net) for name, net in t.nets.items()}
    history = t.fit(progress=False)
    assert t.step == 5
    for name in ("G", "F", "D_Y", "D_X", "Q_sim"):
        assert torch.equal(_params(t.nets[name]), before[name]), f"the Q tail moved {name}"
    assert not torch.equal(_params(t.nets["Q_real"]), before["Q_real"])
    # the cosine runs from lr_q down to 5% of it over the tail
    expected = [1.0, 0.05 + 0.475 * 1.5, 0.05 + 0.475 * 0.5]
    assert [q_tail_lr_factor(t.cfg, s) for s in (2, 3, 4)] == pytest.approx(expected)
    tail = [h for h in history if "loss_generators" not in h]
    assert [h["step"] for h in tail] == [3, 4, 5]
    assert [h["lr_factor_q"] for h in tail] == pytest.approx(expected)
    assert all(set(h) >= {"loss_rl", "loss_rl/Q_real"} and "loss_rl/Q_sim" not in h for h in tail)
    assert t.opt_q.param_groups[0]["lr"] == pytest.approx(t.cfg.lr_q * expected[-1])
    # the exported policy is the tail's Q_real
    policy = load_policy(tmp_path / "policy")
    exported = torch.cat([p.detach().flatten() for p in policy.qnet.parameters()])
    assert torch.equal(exported, _params(t.nets["Q_real"]))
    with pytest.raises(ValueError, match="q_tail_steps"):
        GanTrainConfig(q_tail_steps=-1)


def test_q_cosine_keeps_the_gan_rates_and_decays_the_q_rates_by_a_cosine(tmp_path):
    cfg = GanTrainConfig(steps=4, lr_schedule="q-cosine")
    expected_q = [1.0, 0.05 + 0.475 * (1 + 2**-0.5), 0.525, 0.05 + 0.475 * (1 - 2**-0.5)]
    assert [f[0] for f in (lr_factors(cfg, s) for s in range(4))] == [1.0] * 4
    assert [lr_factors(cfg, s)[1] for s in range(4)] == pytest.approx(expected_q)
    t = _trainer(tmp_path, steps=4, lr_schedule="q-cosine")
    history = t.fit(progress=False)
    assert [h["lr_factor"] for h in history] == [1.0] * 4
    assert [h["lr_factor_q"] for h in history] == pytest.approx(expected_q)
    assert [g["lr"] for opt in (t.opt_g, t.opt_d) for g in opt.param_groups] == [t.cfg.lr_gan] * 2
    assert t.opt_q.param_groups[0]["lr"] == pytest.approx(t.cfg.lr_q * expected_q[-1])
    # like linear-decay, the cosine spans --steps: a resumed run may not stretch it
    with pytest.raises(RlcgError, match=r"steps: 4 -> 8"):
        _trainer(tmp_path, steps=8, resume=True, lr_schedule="q-cosine")


def _adam_steps(opt: torch.optim.Optimizer, module: torch.nn.Module) -> set[int]:
    return {int(opt.state[p]["step"]) for p in module.parameters()}


def test_q_updates_per_step_give_q_real_k_updates_per_joint_step_on_the_moving_generator(tmp_path):
    t = _trainer(tmp_path, steps=2, q_updates_per_step=3)
    history = t.fit(progress=False)
    nets = t.nets
    assert _adam_steps(t.opt_g, nets["G"]) == {2}
    assert _adam_steps(t.opt_q, nets["Q_sim"]) == {2}  # Q_sim keeps one update per joint step
    assert _adam_steps(t.opt_q, nets["Q_real"]) == {6}
    assert all(np.isfinite(h["loss_rl/Q_real:extra"]) for h in history)
    # Q_sim's Polyak target follows Q_sim once per joint step, as Q_sim is updated once
    fresh = _trainer(tmp_path / "polyak", steps=1, q_updates_per_step=3)
    before = [p.detach().clone() for p in fresh.q_targets.Q_sim.parameters()]
    fresh.train_step()
    rate = fresh.cfg.polyak
    for b, target, online in zip(before, fresh.q_targets.Q_sim.parameters(), fresh.nets["Q_sim"].parameters()):
        assert torch.allclose(target, rate * b + (1 - rate) * online, atol=1e-6)
    assert "loss_rl/Q_real:extra" not in _trainer(tmp_path / "one", steps=1).fit(progress=False)[0]
    # the count is part of the objective
    with pytest.raises(RlcgError, match=r"q_updates_per_step: 3 -> 1"):
        _trainer(tmp_path, steps=4, resume=True)
    with pytest.raises(ValueError, match="q_updates_per_step"):
        GanTrainConfig(q_updates_per_step=0)
    assert (
        objective_changes(
            {k: v for k, v in to_dict(GanTrainConfig()).items() if k != "q_updates_per_step"}, GanTrainConfig()
        )
        == []
    )


def test_fresh_q_real_starts_q_real_from_scratch_and_q_sim_from_the_checkpoint(tmp_path):
    from rlcg.models.qnet import QNetwork
    from rlcg.rl.cem import CEMConfig
    from rlcg.rl.policy import save_policy

    torch.manual_seed(123)
    init = QNetwork(TINY_Q)
    save_policy(tmp_path / "init", init, CEMConfig())
    warm = _trainer(tmp_path / "warm", steps=1, init_q=tmp_path / "init")
    fresh = _trainer(tmp_path / "fresh", steps=1, init_q=tmp_path / "init", fresh_q_real=True)
    scratch = _trainer(tmp_path / "scratch", steps=1)
    for name in ("Q_real", "Q_sim"):
        assert torch.equal(_params(warm.nets[name]), _params(init))
    assert torch.equal(_params(fresh.nets["Q_sim"]), _params(init))
    assert torch.equal(_params(fresh.nets["Q_real"]), _params(scratch.nets["Q_real"]))
    assert not torch.equal(_params(fresh.nets["Q_real"]), _params(init))
    with pytest.raises(RlcgError, match="fresh_q_real"):
        _trainer(tmp_path / "no-init", steps=1, fresh_q_real=True)
    with pytest.raises(RlcgError, match="fresh_q_real"):
        _trainer(tmp_path / "gan", method="gan", steps=1, init_q=tmp_path / "init", fresh_q_real=True)


def test_init_run_starts_every_network_from_a_run_s_checkpoint_as_a_new_run(tmp_path):
    from rlcg.rl.checkpoint import load_checkpoint

    _trainer(tmp_path / "source", steps=2).fit(progress=False)
    _, saved, _ = load_checkpoint(tmp_path / "source" / "checkpoint", kind="rl-cyclegan")

    def stored(name):  # in the network's own parameter order
        return torch.cat([saved[f"{name}.{k}"].flatten() for k, _ in new.nets[name].named_parameters()])

    # a new objective and schedule are the point: the identity term and a Q cosine the source never had
    new = _trainer(
        tmp_path / "new", steps=2, init_run=tmp_path / "source", lr_schedule="q-cosine", weights=LossWeights(identity=5)
    )
    assert new.step == 0 and not new.opt_g.state and not new.opt_q.state
    every = ("G", "F", "D_X", "D_Y", "Q_sim", "Q_sim_target", "Q_real", "Q_real_target")
    assert set(new.nets) == set(every)
    for name in every:
        assert torch.equal(_params(new.nets[name]), stored(name)), name
    fresh = _trainer(tmp_path / "fresh", steps=2, init_run=tmp_path / "source", fresh_q_real=True)
    scratch = _trainer(tmp_path / "scratch", steps=2)
    for name in ("G", "F", "D_X", "D_Y", "Q_sim", "Q_sim_target"):
        assert torch.equal(_params(fresh.nets[name]), stored(name)), name
    for name in ("Q_real", "Q_real_target"):
        assert torch.equal(_params(fresh.nets[name]), _params(scratch.nets[name])), name
        assert not torch.equal(_params(fresh.nets[name]), stored(name)), name
    fresh.fit(progress=False)  # and it trains on from there
    assert fresh.step == 2 and not torch.equal(_params(fresh.nets["G"]), stored("G"))
    # resumed with the same options, it carries on from its own checkpoint, not from RUN's or from scratch
    _, own, _ = load_checkpoint(tmp_path / "fresh" / "checkpoint", kind="rl-cyclegan")
    resumed = _trainer(tmp_path / "fresh", steps=4, resume=True, init_run=tmp_path / "source", fresh_q_real=True)
    assert resumed.step == 2 and resumed.opt_q.state
    for name in every:
        own_params = torch.cat([own[f"{name}.{k}"].flatten() for k, _ in resumed.nets[name].named_parameters()])
        assert torch.equal(_params(resumed.nets[name]), own_params), name
    resumed.fit(progress=False)
    assert resumed.step == 4

    with pytest.raises(RlcgError, match="its generator .* differs"):
        _trainer(tmp_path / "wide", init_run=tmp_path / "source", generator=GeneratorConfig(width=8, blocks=1))
    with pytest.raises(RlcgError, match="pass one"):
        _trainer(tmp_path / "both", init_run=tmp_path / "source", init_q=tmp_path / "source" / "policy")
    _trainer(tmp_path / "cyclegan", method="cyclegan", steps=2).fit(progress=False)
    with pytest.raises(RlcgError, match="a cyclegan run holds no Q_sim, Q_sim_target, which rl-cyclegan needs"):
        _trainer(tmp_path / "from-cyclegan", init_run=tmp_path / "cyclegan")
    assert _trainer(tmp_path / "gan", method="gan", init_run=tmp_path / "source").nets.keys() == {
        "G",
        "D_Y",
        "Q_real",
        "Q_real_target",
    }


def test_q_real_average_exports_the_mean_of_q_real_s_weights_after_each_step_past_its_start(tmp_path):
    from rlcg.gan.trainer import export_q, load_run
    from rlcg.rl.checkpoint import load_checkpoint
    from rlcg.rl.policy import load_policy

    t = _trainer(tmp_path, steps=4, q_real_average_from=1)
    after_step = []
    train_step = t.train_step

    def recorded_step():
        stats = train_step()
        after_step.append(_params(t.nets["Q_real"]))
        return stats

    t.train_step = recorded_step
    t.fit(progress=False)
    expected = torch.stack(after_step[1:]).mean(0)  # the weights after steps 2, 3 and 4
    assert t.q_real_averaged == 3
    assert torch.allclose(_params(t.nets["Q_real_average"]), expected, atol=1e-6)
    assert not torch.allclose(expected, after_step[-1], atol=1e-6)
    policy = load_policy(tmp_path / "policy")
    assert torch.equal(torch.cat([p.detach().flatten() for p in policy.qnet.parameters()]), _params(t.q_real_average))
    assert load_checkpoint(tmp_path / "policy", kind="q-policy")[0]["training"]["q_real_average"] == {
        "from_step": 1,
        "weights": 3,
    }
    assert torch.equal(_params(load_run(tmp_path).Q_real), _params(t.q_real_average))
    # before its start the run exports, and load_run reads, Q_real itself
    early = _trainer(tmp_path / "early", steps=2, q_real_average_from=1)
    early.train_step()
    early.save()
    assert early.q_real_averaged == 0
    assert torch.equal(_params(load_run(tmp_path / "early").Q_real), _params(early.nets["Q_real"]))
    assert "q_real_average" not in load_checkpoint(tmp_path / "early" / "policy", kind="q-policy")[0]["training"]
    with pytest.raises(RlcgError, match="starts after step 1; the checkpoint is at step 1 and holds none yet"):
        export_q(tmp_path / "early", "Q_real_average", tmp_path / "none")
    export_q(tmp_path, "Q_real_average", tmp_path / "average")
    assert torch.equal(_params(load_policy(tmp_path / "average").qnet), _params(t.q_real_average))
    # what is exported is part of the objective; runs from before the setting resume without it
    with pytest.raises(RlcgError, match=r"q_real_average_from: 1 -> 2"):
        _trainer(tmp_path, steps=6, resume=True, q_real_average_from=2)
    saved = {k: v for k, v in to_dict(GanTrainConfig()).items() if k != "q_real_average_from"}
    assert objective_changes(saved, GanTrainConfig()) == []
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=r"q_real_average_from must be a step in \[0, 4\)"):
            GanTrainConfig(steps=3, q_tail_steps=1, q_real_average_from=bad)


def test_q_real_average_option_reaches_the_gan_config_and_is_refused_where_it_does_not_apply(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    cfg = build_gan_config(parser.parse_args(["--q-real-average-from", "1"]), "cyclegan", 2, 4)
    assert cfg.q_real_average_from == 1
    assert build_gan_config(parser.parse_args([]), "cyclegan", 2, 4).q_real_average_from is None
    argv = ["train", "--sim-data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--method", "sim-only", "--q-real-average-from", "1"]) == 2
    assert "--method sim-only does not use --q-real-average-from" in capsys.readouterr().err
    gan = [*argv, "--method", "gan", "--real-data", str(tmp_path), "--steps", "10"]
    assert main([*gan, "--q-real-average-from", "10"]) == 2
    assert "--q-real-average-from must be a step from 0 to 9 (the run has 10)" in capsys.readouterr().err
    assert main([*gan, "--q-tail-steps", "5", "--q-real-average-from", "15"]) == 2
    assert "from 0 to 14" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_export_q_writes_any_q_network_of_a_run_as_a_policy_and_refuses_what_the_run_lacks(tmp_path, capsys):
    from rlcg.cli import main
    from rlcg.rl.policy import load_policy

    t = _trainer(tmp_path / "run", steps=2)
    t.fit(progress=False)
    for name, net in (("Q_real_target", t.q_targets.Q_real), ("Q_sim", t.nets["Q_sim"])):
        assert main(["export-q", str(tmp_path / "run"), "--net", name, "--out", str(tmp_path / name)]) == 0
        exported = load_policy(tmp_path / name).qnet
        assert torch.equal(torch.cat([p.detach().flatten() for p in exported.parameters()]), _params(net)), name
    assert not torch.equal(_params(t.q_targets.Q_real), _params(t.nets["Q_real"]))
    assert main(["export-q", str(tmp_path / "run"), "--net", "Q_sim", "--out", str(tmp_path / "Q_sim")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["export-q", str(tmp_path / "run"), "--net", "Q_real_average", "--out", str(tmp_path / "a")]) == 2
    assert "holds no Q_real_average (it holds Q_real, Q_real_target, Q_sim, Q_sim_target)" in capsys.readouterr().err
    assert main(["export-q", str(tmp_path / "run"), "--net", "G", "--out", str(tmp_path / "g")]) == 2
    assert "unknown Q-network 'G'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "g").exists()


def test_joint_q_options_reach_the_gan_config_and_are_refused_where_they_do_not_apply(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(["--q-updates-per-step", "4", "--lr-q", "1e-3", "--lr-schedule", "q-cosine"])
    cfg = build_gan_config(args, "rl-cyclegan", 2, 4)
    assert (cfg.q_updates_per_step, cfg.lr_q, cfg.lr_schedule) == (4, 1e-3, "q-cosine")
    default = build_gan_config(parser.parse_args([]), "rl-cyclegan", 2, 4)
    assert (default.q_updates_per_step, default.lr_q) == (1, GanTrainConfig().lr_q)
    argv = ["train", "--sim-data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--method", "sim-only", "--q-updates-per-step", "2"]) == 2
    err = capsys.readouterr().err
    assert "does not use --q-updates-per-step" in err and "one update per step: give it more --steps" in err
    for bad in ("0", "nan", "inf"):
        with pytest.raises(SystemExit):
            main([*argv, "--method", "gan", "--real-data", str(tmp_path), "--lr-q", bad])
        assert "--lr-q: must be a finite number above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--method", "gan", "--real-data", str(tmp_path), "--lambda-cycle", "nan"])
    assert "--lambda-cycle: must be a finite number of at least 0" in capsys.readouterr().err
    for extra in (["--method", "rl-cyclegan"], ["--method", "cyclegan", "--init-q", "default"]):
        assert main([*argv, *extra, "--real-data", str(tmp_path), "--fresh-q-real"]) == 2
        assert "--fresh-q-real starts Q_sim from --init-q or --init-run" in capsys.readouterr().err
    source = tmp_path / "source"
    (source / "checkpoint").mkdir(parents=True)
    (source / "checkpoint" / "config.json").write_text("{}")
    gan = [*argv, "--method", "rl-cyclegan", "--real-data", str(tmp_path)]
    for extra, message in (
        (["--method", "sim-only", "--init-run", str(source)], "does not use --init-run (only cyclegan, gan"),
        ([*gan[len(argv) :], "--init-run", str(source), "--init-q", "default"], "leave out --init-q"),
        ([*gan[len(argv) :], "--init-run", str(tmp_path / "none")], "no GAN run checkpoint there"),
    ):
        assert main([*argv, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_q_tail_is_added_to_a_finished_run_on_resume_but_not_changed_once_begun(tmp_path):
    straight = _trainer(tmp_path / "a", steps=2, q_tail_steps=2)
    straight.fit(progress=False)
    _trainer(tmp_path / "b", steps=2).fit(progress=False)
    extended = _trainer(tmp_path / "b", steps=2, q_tail_steps=2, resume=True)
    assert extended.step == 2
    extended.fit(progress=False)
    for name in ("G", "Q_real", "Q_sim"):
        assert torch.allclose(_params(straight.nets[name]), _params(extended.nets[name]), atol=1e-6), name
    killed = _trainer(tmp_path / "c", steps=2, q_tail_steps=4)
    killed.fit(progress=False)  # finished; pretend it was killed one step into its tail
    killed.step = 3
    killed.save()
    with pytest.raises(RlcgError, match="into its Q tail; resume it with --steps 2 --q-tail-steps 4"):
        _trainer(tmp_path / "c", steps=2, q_tail_steps=8, resume=True)
    assert _trainer(tmp_path / "c", steps=2, q_tail_steps=4, resume=True).step == 3


def test_q_tail_option_reaches_the_gan_config_and_is_refused_for_q_only_methods(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    assert build_gan_config(parser.parse_args(["--q-tail-steps", "7"]), "gan", 2, 4).q_tail_steps == 7
    assert build_gan_config(parser.parse_args([]), "gan", 2, 4).q_tail_steps == GanTrainConfig().q_tail_steps == 0
    argv = ["train", "--sim-data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--method", "sim-only", "--q-tail-steps", "5"]) == 2
    assert "rlcg train-q --lr-schedule cosine" in capsys.readouterr().err
    assert main([*argv, "--method", "gan", "--real-data", str(tmp_path), "--q-tail-steps", "-1"]) == 2
    assert "--q-tail-steps must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_real_rl_share_weighs_q_real_s_two_td_terms_and_is_part_of_the_objective(tmp_path):
    t = _trainer(tmp_path / "a", steps=1, real_rl=True, real_rl_share=0.2)
    sim, real = t._batch(t.sim_data), t._batch(t.real_data)
    _, out, _ = t.generator_loss(sim, real)
    loss, parts = t.q_loss(sim, real, out)
    assert set(parts) == {"Q_real", "Q_sim", "Q_sim:cycled", "Q_real:real"}
    expected = 1.6 * parts["Q_real"] + parts["Q_sim"] + parts["Q_sim:cycled"] + 0.4 * parts["Q_real:real"]
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    # the default weighs both alike, exactly as the plain sum did before the setting existed
    assert GanTrainConfig(real_rl=True).td_weights == {"Q_real": 1.0, "Q_real:real": 1.0}
    assert GanTrainConfig(real_rl_share=0.2).td_weights is None  # no real TD term to weigh
    # the Q tail weighs them the same way
    t.fit(progress=False)
    tail = _trainer(tmp_path / "a", steps=1, q_tail_steps=1, real_rl=True, real_rl_share=0.2, resume=True)
    history = tail.fit(progress=False)
    assert history[-1]["loss_rl"] == pytest.approx(
        1.6 * history[-1]["loss_rl/Q_real"] + 0.4 * history[-1]["loss_rl/Q_real:real"], rel=1e-5
    )
    with pytest.raises(RlcgError, match=r"real_rl_share: 0.2 -> 0.5"):
        _trainer(tmp_path / "a", steps=2, resume=True, real_rl=True)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="real_rl_share"):
            GanTrainConfig(real_rl_share=bad)
    # runs saved before the setting existed weighed both alike
    saved = to_dict(GanTrainConfig(real_rl=True))
    del saved["real_rl_share"]
    assert objective_changes(saved, GanTrainConfig(real_rl=True)) == []
    assert objective_changes(saved, GanTrainConfig(real_rl=True, real_rl_share=0.25)) == ["real_rl_share: 0.5 -> 0.25"]


def test_real_rl_share_option_reaches_the_gan_config_and_needs_real_rl(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(["--real-rl", "--real-rl-share", "0.25"])
    assert build_gan_config(args, "rl-cyclegan", 2, 4).real_rl_share == 0.25
    argv = ["train", "--method", "gan", "--sim-data", str(tmp_path), "--real-data", str(tmp_path)]
    argv += ["--out", str(tmp_path / "run")]
    assert main([*argv, "--real-rl-share", "0.25"]) == 2
    assert "--real-rl-share applies with --real-rl" in capsys.readouterr().err
    assert main([*argv, "--real-rl", "--real-rl-share", "0"]) == 2
    assert "--real-rl-share must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_lr_schedule_option_reaches_the_gan_config_and_is_refused_for_q_only_methods(tmp_path, capsys):
    import argparse

    from rlcg.cli import main
    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(["--lr-schedule", "linear-decay"])
    assert build_gan_config(args, "rl-cyclegan", 2, 4).lr_schedule == "linear-decay"
    assert build_gan_config(parser.parse_args([]), "rl-cyclegan", 2, 4).lr_schedule == GanTrainConfig().lr_schedule
    argv = ["train", "--method", "sim-only", "--sim-data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--lr-schedule", "linear-decay"]) == 2
    assert "rlcg train-q --lr-schedule" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_discriminator_size_options_reach_the_networks_and_a_change_is_refused_on_resume(tmp_path):
    import argparse

    from rlcg.gan.commands import add_train_args, build_gan_config

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    cfg = build_gan_config(parser.parse_args(["--disc-width", "8", "--disc-layers", "2"]), "cyclegan", 2, 4)
    assert cfg.discriminator == DiscriminatorConfig(width=8, layers=2)
    assert build_gan_config(parser.parse_args([]), "cyclegan", 2, 4).discriminator == DiscriminatorConfig()
    t = _trainer(tmp_path, method="cyclegan", steps=2, discriminator=DiscriminatorConfig(width=8, layers=2))
    # two stride-2 layers: 32 px -> 8 px, then two stride-1 4x4 convolutions -> a 6x6 map of patches
    assert t.nets["D_Y"](torch.zeros(1, 3, 32, 32)).shape == (1, 1, 6, 6)
    t.fit(progress=False)
    with pytest.raises(RlcgError, match=r"discriminator.layers: 2 -> 3"):
        _trainer(tmp_path, method="cyclegan", steps=4, resume=True, discriminator=DiscriminatorConfig(width=8))


def test_a_run_from_before_rl_scene_trains_q_resumes_as_it_was_trained():
    saved = to_dict(GanTrainConfig())
    del saved["rl_scene_trains_q"], saved["lr_schedule"]  # checkpoints written before the options existed
    assert objective_changes(saved, GanTrainConfig(rl_scene_trains_q=True)) == ["rl_scene_trains_q: False -> True"]
    assert objective_changes(saved, GanTrainConfig(lr_schedule="linear-decay")) == [
        "lr_schedule: 'constant' -> 'linear-decay'"
    ]
    assert objective_changes(saved, GanTrainConfig()) == []
    # nor from before the identity term and Q_real's augmentation: they were off
    del saved["q_real_augment"], saved["weights"]["identity"]
    assert objective_changes(saved, GanTrainConfig()) == []
    assert objective_changes(saved, GanTrainConfig(weights=LossWeights(identity=5.0))) == [
        "weights.identity: 0.0 -> 5.0"
    ]
    # settings of terms a method does not have do not block its resume
    saved = to_dict(GanTrainConfig(method="gan"))
    assert objective_changes(saved, GanTrainConfig(method="gan", weights=LossWeights(rl_scene=5.0, cycle=1.0))) == []


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, os.environ["TESTS_DIR"])
    from pathlib import Path
    from test_gan import _trainer
    torch.set_num_threads(1)
    out = Path(os.environ["OUT"])
    # the tail and the further Q_real updates average Q_real's gradients by hand
    from safetensors.torch import save_file
    def flat(t):
        return torch.cat([p.detach().flatten() for net in t.nets.values() for p in net.parameters()]).contiguous()
    t = _trainer(out / "run", steps=3, q_tail_steps=2, q_updates_per_step=2)
    t.fit(progress=False)
    save_file({"flat": flat(t)}, str(out / f"rank{t.dist.rank}.safetensors"))
    # a run stopped at step 2 and resumed to step 4 against one trained to step 4 in one go
    t = _trainer(out / "straight", steps=4)
    t.fit(progress=False)
    save_file({"flat": flat(t)}, str(out / f"straight{t.dist.rank}.safetensors"))
    _trainer(out / "resumed", steps=2).fit(progress=False)
    t = _trainer(out / "resumed", steps=4, resume=True)
    assert t.step == 2
    t.fit(progress=False)
    save_file({"flat": flat(t)}, str(out / f"resumed{t.dist.rank}.safetensors"))
    t.dist.close()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_keeps_ranks_identical_and_resumes_as_if_never_stopped(tmp_path):
    """Both ranks end with the same parameters; a run stopped and resumed under torchrun ends where
    one trained in one go does (each rank goes on with its own batches, not rank 0's); and a
    resume by another number of processes is refused."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OUT=str(tmp_path), TESTS_DIR=os.path.dirname(__file__))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(script),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    from safetensors.torch import load_file

    r0 = load_file(str(tmp_path / "rank0.safetensors"))["flat"]
    r1 = load_file(str(tmp_path / "rank1.safetensors"))["flat"]
    assert torch.equal(r0, r1)
    # and training moved them (each rank drew different batches, gradients were averaged)
    single = _trainer(tmp_path / "single", steps=0)
    init = torch.cat([p.detach().flatten() for net in single.nets.values() for p in net.parameters()])
    assert not torch.equal(r0, init)
    for rank in (0, 1):
        straight = load_file(str(tmp_path / f"straight{rank}.safetensors"))["flat"]
        assert torch.equal(load_file(str(tmp_path / f"resumed{rank}.safetensors"))["flat"], straight)
    with pytest.raises(RlcgError, match=r"trained by 2 process.*resumed by 1.*nproc_per_node 2"):
        _trainer(tmp_path / "resumed", steps=5, resume=True)


def test_discriminator_layers_are_checked_against_the_image_size():
    """The check refuses exactly the layer counts whose last normalised map is a single element
    (InstanceNorm then fails mid-training with a traceback: --disc-layers 5 at 64 px)."""
    from rlcg.configio import ConfigError
    from rlcg.models.gan import DiscriminatorConfig, PatchDiscriminator

    for size in (32, 64, 128):
        for layers in range(1, 7):
            cfg = DiscriminatorConfig(width=4, layers=layers)
            try:
                cfg.check_image_size(size)
            except ConfigError:
                with pytest.raises(ValueError):
                    PatchDiscriminator(cfg)(torch.zeros(1, 3, size, size))
            else:
                PatchDiscriminator(cfg)(torch.zeros(1, 3, size, size))


def test_ctrl_c_mid_step_finishes_the_step_and_saves_it(tmp_path, fit_with_ctrl_c_during_step):
    """(The Q-learning test checks that such a save resumes exactly; test_resume_after_a_kill that a
    saved GAN run does.)"""
    from rlcg.interrupts import Interrupted

    interrupted = fit_with_ctrl_c_during_step(_trainer(tmp_path, steps=4), at=1)
    assert isinstance(interrupted, Interrupted)
    assert str(interrupted) == f"step 2 of 4 saved in {tmp_path}"  # the step under way was finished
    assert _trainer(tmp_path, steps=4, resume=True).step == 2
