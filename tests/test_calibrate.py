"""Grasp-offset calibration on recorded outcomes (`rlcg calibrate`) and the calibrated policy acting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_helpers import real_episodes, write_bag

from rlcg.cli import main
from rlcg.models.qnet import QNetConfig, QNetwork
from rlcg.policies import Observation
from rlcg.rl.calibrate import CalibrationError, calibrate_policy, fit_grasp_offset
from rlcg.rl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlcg.rl.policy import POLICY_KIND, LearnedPolicy, load_policy
from rlcg.sim.config import SimConfig, WorkspaceBounds


@pytest.fixture(scope="module")
def scenes() -> np.ndarray:
    return np.stack([ep.steps[0].image for ep in real_episodes(40, base_seed=21)])


def outcomes_of_a_shifted_policy(scenes: np.ndarray, true_offset, per_scene: int = 25, seed: int = 0):
    """Grasps around the shipped policy's choice in each scene, with outcomes drawn from its own Q as
    if every grasp had landed ``true_offset`` away: P(success | a) = sigmoid Q(y, a - true_offset)."""
    policy = load_policy("default")
    rng = np.random.default_rng(seed)
    bounds = policy.bounds
    actions = []
    for image in scenes:
        chosen = policy.act(Observation(image, bounds, np.random.default_rng(seed))).action
        a = np.tile(chosen, (per_scene, 1))
        a[:, :2] += rng.normal(0, 0.015, (per_scene, 2))
        a[:, 2] = rng.uniform(*bounds.yaw, per_scene)
        actions.append(a)
    actions = np.concatenate(actions).astype(np.float32)
    images = np.repeat(scenes, per_scene, axis=0)
    shifted = actions.copy()
    shifted[:, :2] -= np.asarray(true_offset, np.float32)
    with torch.no_grad():
        p = torch.sigmoid(policy.qnet(QNetwork.preprocess(torch.as_tensor(images)), torch.as_tensor(shifted))).numpy()
    rewards = (rng.random(len(p)) < p).astype(np.float64)
    return policy, images, actions, rewards


@pytest.mark.parametrize("true_offset", [(0.006, -0.004), (0.0, 0.0)])
def test_fit_recovers_the_offset_the_outcomes_were_drawn_with(scenes, true_offset):
    policy, images, actions, rewards = outcomes_of_a_shifted_policy(scenes, true_offset)
    policy.qnet.train()
    fit = fit_grasp_offset(policy.qnet, images, actions, rewards)
    # the caller's network comes back as it was: in its mode, its weights trainable
    assert policy.qnet.training and all(p.requires_grad for p in policy.qnet.parameters())
    assert fit.grasps == 1000 and 0 < fit.successes < 1000
    error = np.abs(np.subtract(fit.offset, true_offset))
    stderr = np.asarray(fit.stderr)
    assert (stderr > 0).all() and (stderr < 0.004).all(), fit
    assert (error < np.maximum(3 * stderr, 0.002)).all(), fit
    assert fit.cross_entropy_after <= fit.cross_entropy_before + 1e-6
    if true_offset != (0.0, 0.0):  # the shift explains the outcomes clearly better than none
        assert fit.cross_entropy_before - fit.cross_entropy_after > 0.005, fit


def test_fit_refuses_what_it_cannot_calibrate(scenes):
    policy, images, actions, rewards = outcomes_of_a_shifted_policy(scenes[:8], (0.0, 0.0), per_scene=20)
    with pytest.raises(CalibrationError, match="too few"):
        fit_grasp_offset(policy.qnet, images[:50], actions[:50], rewards[:50])
    with pytest.raises(CalibrationError, match="all 160 recorded grasps failed"):
        fit_grasp_offset(policy.qnet, images, actions, np.zeros(160))
    with pytest.raises(CalibrationError, match="max_offset"):
        fit_grasp_offset(policy.qnet, images, actions, rewards, max_offset=0.5)
    # outcomes drawn 3 cm off: the optimum lies on a 1 cm search bound, which is an error, not a result
    policy, images, actions, rewards = outcomes_of_a_shifted_policy(scenes, (0.03, 0.0))
    with pytest.raises(CalibrationError, match="lies on the"):
        fit_grasp_offset(policy.qnet, images, actions, rewards, max_offset=0.01)


def small_policy(offset=(0.0, 0.0)) -> LearnedPolicy:
    torch.manual_seed(0)
    return LearnedPolicy(QNetwork(QNetConfig.for_world(SimConfig.load())), grasp_offset=offset)


def test_the_offset_moves_the_chosen_grasp_and_never_leaves_the_workspace(scenes):
    plain, shifted = small_policy(), small_policy((0.007, -0.003))
    image = scenes[0]
    bounds = plain.bounds
    a = plain.act(Observation(image, bounds, np.random.default_rng(5))).action
    b = shifted.act(Observation(image, bounds, np.random.default_rng(5))).action
    np.testing.assert_allclose(b[:2] - a[:2], np.clip(a[:2] + (0.007, -0.003), bounds.low[:2], bounds.high[:2]) - a[:2])
    np.testing.assert_array_equal(b[2:], a[2:])
    # a workspace narrower than the offset: every grasp is clipped inside it
    narrow = WorkspaceBounds(x=(0.59, 0.6), y=(-0.005, 0.0))
    for seed in range(5):
        c = shifted.act(Observation(image, narrow, np.random.default_rng(seed))).action
        assert (c >= narrow.low).all() and (c <= narrow.high).all()
    with pytest.raises(CalibrationError, match="finite"):
        small_policy((float("nan"), 0.0))


def test_calibrated_checkpoint_round_trip_leaves_the_source_alone(scenes, tmp_path):
    policy, images, actions, rewards = outcomes_of_a_shifted_policy(scenes[:10], (0.005, 0.002))
    fit = fit_grasp_offset(policy.qnet, images, actions, rewards)
    out = calibrate_policy("default", tmp_path / "cal", fit, ["bags/real"])
    loaded = load_policy(out)
    assert loaded.grasp_offset == pytest.approx(fit.offset)
    assert load_policy("default").grasp_offset == (0.0, 0.0)  # a checkpoint without the field: no offset
    config, weights, _ = load_checkpoint(out, kind=POLICY_KIND)
    assert config["calibration"]["data"] == ["bags/real"] and config["calibration"]["grasps"] == 250
    with pytest.raises(CalibrationError, match="is the policy itself"):
        calibrate_policy(out, out, fit, [])
    for bad, match in [([float("nan"), 0.0], "finite"), ([0.2, 0.0], "exceeds"), ("x", "two numbers")]:
        save_checkpoint(tmp_path / "bad", POLICY_KIND, {**config, "grasp_offset": bad}, weights)
        with pytest.raises(CheckpointError, match=match):
            load_policy(tmp_path / "bad")


def test_calibrate_cli(tmp_path, capsys):
    bag = write_bag(tmp_path / "real", real_episodes(120, base_seed=3))
    out = tmp_path / "cal"
    assert main(["calibrate", "--data", str(bag), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grasps"] == 120 and report["out"] == str(out)
    assert load_policy(out).grasp_offset == pytest.approx(report["offset"])
    # the shipped sim policy on sim grasps: no offset to speak of
    assert max(abs(v) for v in report["offset"]) < 0.01, report
    assert main(["calibrate", "--data", str(bag), "--out", str(tmp_path / "cal2")]) == 0
    assert "calibrate: 120 recorded grasps" in capsys.readouterr().out
    # evaluations say which offset they ran with; the uncalibrated policy's say none
    evaluate = ["eval", "--episodes", "2", "--no-progress", "--policy"]
    assert main([*evaluate, str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grasp_offset"] == pytest.approx(report["offset"])
    assert main([*evaluate, str(out)]) == 0
    assert "(grasp offset {:+.1f}, {:+.1f} mm)".format(*(1000 * v for v in report["offset"])) in capsys.readouterr().out
    assert main([*evaluate, "default", "--json"]) == 0
    assert "grasp_offset" not in json.loads(capsys.readouterr().out)
    assert main(["calibrate", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such dataset" in capsys.readouterr().err
    assert main(["calibrate", "--policy", str(out), "--data", str(bag), "--out", str(out)]) == 2
    assert "is the policy itself" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # an earlier calibrated copy may be written again; any other checkpoint is left alone
    assert main(["calibrate", "--data", str(bag), "--out", str(out)]) == 0
    trained = tmp_path / "trained"
    save_checkpoint(trained, POLICY_KIND, {"qnet": {}}, {"w": torch.zeros(1)})
    before = (trained / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["calibrate", "--data", str(bag), "--out", str(trained)]) == 2
    assert "already holds something other than a calibrated policy" in capsys.readouterr().err
    assert (trained / "config.json").read_bytes() == before
    killed = tmp_path / "killed"  # a calibration killed while saving leaves only a temporary file
    killed.mkdir()
    (killed / ".model-x.safetensors.tmp").write_bytes(b"partial")
    assert main(["calibrate", "--data", str(bag), "--out", str(killed)]) == 0
    assert load_policy(killed).grasp_offset == pytest.approx(report["offset"])


def test_calibrate_takes_any_device_name_the_other_commands_take(capsys):
    from rlcg.cli import build_parser

    args = build_parser().parse_args(["calibrate", "--data", "d", "--out", "o", "--device", "cuda:1"])
    assert args.device == "cuda:1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate", "--data", "d", "--out", "o", "--device", "U"])
    assert "--device" in capsys.readouterr().err
