"""policy_node logic (rlcg.robot.policy_runner) without rclpy: fresh-image rule, model loading at
start-up, decisions with a real (tiny, untrained) Q-network and CEM, and the episode messages."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from rlcg.data import topics
from rlcg.errors import RlcgError
from rlcg.policies import Decision
from rlcg.robot import messages
from rlcg.robot.policy_runner import (
    PolicyLoadError,
    PolicyNodeSettings,
    PolicyRunner,
    RunnerState,
    StaleImageError,
    fit_image,
    fit_intrinsics,
    heatmap_rgb,
    load_grasp_policy,
    workspace_for,
)
from rlcg.sim.camera import CameraIntrinsics

S = 1_000_000_000
T0 = 1_800_000_000 * S


def image_cdr(stamp: int, size=(64, 64), seed: int = 0, encoding: str = "rgb8") -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    return messages.serialize(messages.image_msg(rgb, stamp, "camera_optical_frame", encoding))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real policy checkpoint (safetensors + config) of a small untrained Q-network."""
    from rlcg.models.qnet import QNetConfig, QNetwork
    from rlcg.rl.cem import CEMConfig
    from rlcg.rl.policy import save_policy

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    qnet = QNetwork(QNetConfig(channels=(8, 8, 8), head_channels=8, hidden=16))
    save_policy(path, qnet, CEMConfig(iterations=2, population=16, elites=4))
    return path


def runner_for(model="random", **kw) -> PolicyRunner:
    return PolicyRunner.from_settings(PolicyNodeSettings(model=model, **kw))


def test_no_image_and_stale_image_are_refused():
    r = runner_for(max_image_age_s=0.5)
    with pytest.raises(StaleImageError, match="no camera image"):
        r.decide(T0)
    r.on_image_cdr(image_cdr(T0))
    with pytest.raises(StaleImageError, match="old"):
        r.decide(T0 + int(0.6 * S))
    assert r.state == RunnerState.IDLE and r.last_used_stamp_ns == -1  # nothing was acted on


def test_unstamped_and_future_images_are_refused():
    r = runner_for()
    r.on_image_cdr(image_cdr(0))
    with pytest.raises(StaleImageError, match="no header stamp"):
        r.decide(T0)
    r.on_image_cdr(image_cdr(T0 + S))
    with pytest.raises(StaleImageError, match="future"):
        r.decide(T0)


def test_an_image_is_used_once_and_only_after_the_grasp():
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    d = r.decide(T0 + int(0.1 * S))
    r.start_episode(d)
    r.on_result(type("R", (), {"success": True, "lifted_height": 0.2, "message": "ok"})(), T0 + 5 * S)
    # An image taken during the grasp is not the image after it, nor one to act on.
    r.on_image_cdr(image_cdr(T0 + 3 * S))
    assert not r.next_image_ready() and r.finish_if_ready(T0 + 5 * S) == []
    r.on_image_cdr(image_cdr(T0 + 6 * S, seed=1))
    out = r.finish_if_ready(T0 + 6 * S)
    assert [m.topic for m in out] == [topics.NEXT_IMAGE, topics.OUTCOME]
    # The image after the grasp is the next observation; it can be acted on once.
    r.decide(T0 + int(6.1 * S))
    r.state = RunnerState.IDLE
    with pytest.raises(StaleImageError, match="no new camera image"):
        r.decide(T0 + int(6.2 * S))


def test_an_image_taken_before_an_abandoned_grasp_ended_is_not_acted_on():
    """A goal aborted mid-motion: a frame taken just before the abort (the arm still in view) is
    newer than the decision's image and fresh by age, but it was taken before the grasp ended."""
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + int(0.1 * S)))
    r.abandon("aborted mid-motion", T0 + S)
    r.on_image_cdr(image_cdr(T0 + int(0.9 * S), seed=1))
    with pytest.raises(StaleImageError, match="taken before the last grasp finished"):
        r.decide(T0 + int(1.1 * S))
    assert r.state == RunnerState.IDLE and r.last_used_stamp_ns == T0
    # the first frame taken after the abort is acted on
    r.on_image_cdr(image_cdr(T0 + int(1.2 * S), seed=2))
    assert r.decide(T0 + int(1.3 * S)).image.stamp_ns == T0 + int(1.2 * S)


def test_an_image_taken_before_the_grasp_result_is_not_acted_on_after_the_episode():
    """The episode closed on the next-image timeout; a late-delivered frame from during the grasp is
    still refused."""
    r = runner_for(next_image_timeout_s=0.5, max_image_age_s=2.0)
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + int(0.1 * S)))
    r.on_result(type("R", (), {"success": True, "lifted_height": 0.2, "message": "ok"})(), T0 + S)
    assert [m.topic for m in r.finish_if_ready(T0 + int(1.6 * S))] == [topics.OUTCOME]
    r.on_image_cdr(image_cdr(T0 + int(0.8 * S), seed=1))  # delivered late: taken 0.2 s before the result
    assert r.state == RunnerState.IDLE
    with pytest.raises(StaleImageError, match="taken before the last grasp finished"):
        r.decide(T0 + int(1.7 * S))  # 0.9 s old: fresh by age alone


class FixedActionPolicy:
    """A policy of the test's own that returns one given action (a broken or unclipped policy)."""

    name = "fixed"

    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float64)

    def act(self, obs):
        return Decision(self.action.copy(), 0.5)


@pytest.mark.parametrize(
    "make_action, match",
    [
        (lambda b: [math.nan, b.y[0], 0.0, 0.0], "invalid action"),
        (lambda b: [b.x[0], math.inf, 0.0, 0.0], "invalid action"),
        (lambda b: [b.x[0], b.y[0], 0.0, -math.inf], "invalid action"),
        (lambda b: [b.x[1] + 0.05, b.y[0], 0.0, 0.0], "outside the workspace"),
        (lambda b: [b.x[0], b.y[0] - 0.05, 0.0, 0.0], "outside the workspace"),
        (lambda b: [b.x[0], b.y[1], b.yaw[1] + 0.5, 0.0], "outside the workspace"),
    ],
    ids=["nan_x", "inf_y", "minus_inf_z_offset", "x_beyond", "y_below", "yaw_beyond"],
)
def test_policy_node_refuses_a_non_finite_or_out_of_workspace_action(sim_config, make_action, match):
    settings = PolicyNodeSettings(model="random")
    bounds = workspace_for(settings, sim_config)
    r = PolicyRunner(FixedActionPolicy(make_action(bounds)), settings, bounds)
    r.on_image_cdr(image_cdr(T0))
    with pytest.raises(RlcgError, match=match):
        r.decide(T0 + int(0.1 * S))
    assert r.state == RunnerState.IDLE and r.pending is None  # no goal, no episode
    # the same policy with an action inside the workspace is acted on
    r.policy = FixedActionPolicy([bounds.x[0], bounds.y[1], 0.0, 0.0])
    d = r.decide(T0 + int(0.2 * S))
    np.testing.assert_allclose(d.action, [bounds.x[0], bounds.y[1], 0.0, 0.0])


def test_after_the_clock_goes_back_only_the_new_timeline_s_images_are_acted_on():
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    r.decide(T0 + int(0.1 * S))
    r.abandon("goal rejected", T0 + S)
    # the simulator restarts: its clock, and the camera's stamps, begin again at 100 s
    with pytest.raises(StaleImageError, match="no camera image"):  # the old timeline's last image is dropped
        r.decide(100 * S)
    r.on_image_cdr(image_cdr(100 * S, seed=1))
    d = r.decide(100 * S + int(0.1 * S))
    assert d.image.stamp_ns == 100 * S
    r.state = RunnerState.IDLE
    with pytest.raises(StaleImageError, match="no new camera image"):  # still used once only
        r.decide(100 * S + int(0.2 * S))
    # an image stamped a little ahead of the clock (within max_clock_skew_s) is no clock jump
    r.on_image_cdr(image_cdr(101 * S + int(0.03 * S), seed=2))
    r.decide(101 * S)
    r.state = RunnerState.IDLE
    with pytest.raises(StaleImageError, match="no new camera image"):
        r.decide(101 * S + int(0.01 * S))


def test_bad_encoding_is_reported_and_keeps_the_last_good_image():
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    msg = messages.deserialize(image_cdr(T0 + S), "sensor_msgs/msg/Image")
    msg.encoding = "16UC1"
    with pytest.raises(messages.ImageEncodingError):
        r.on_image(msg)
    assert r.latest.stamp_ns == T0


def test_missing_and_broken_models_fail_at_start_up(tmp_path):
    with pytest.raises(PolicyLoadError, match="cannot load model"):
        runner_for(model=str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(PolicyLoadError, match="broken"):
        runner_for(model=str(broken))
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(PolicyLoadError):
        runner_for(model=str(pickled))


def test_truncated_weights_fail_at_start_up(tiny_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "truncated"
    shutil.copytree(tiny_checkpoint, bad)
    weights = next(p for p in bad.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(PolicyLoadError, match="cannot load model"):
        runner_for(model=str(bad))


@pytest.mark.parametrize("device", ["cuda:99", "gpu"])
def test_a_device_the_machine_lacks_fails_at_start_up(tiny_checkpoint, device):
    with pytest.raises(PolicyLoadError, match=f"cannot load model .*{device}"):
        runner_for(model=str(tiny_checkpoint), device=device)


def test_learned_policy_decides_with_cem_and_heatmap(tiny_checkpoint):
    s = PolicyNodeSettings(model=str(tiny_checkpoint), cem_iterations=2, cem_population=16, cem_elites=4)
    r = PolicyRunner.from_settings(s)
    assert r.policy.cem.population == 16  # CEM settings reach the policy
    # A 640 x 480 camera image is cropped and resized to the network's 64 x 64 input.
    r.on_image_cdr(image_cdr(T0, size=(480, 640)))
    r.camera = CameraIntrinsics(640, 480, 500.0, 500.0, 320.0, 240.0, "camera_optical_frame")
    d = r.decide(T0 + int(0.05 * S))
    assert d.image.rgb.shape == (64, 64, 3)
    assert np.all(d.action >= r.bounds.low - 1e-9) and np.all(d.action <= r.bounds.high + 1e-9)
    assert 0.0 <= d.q_value <= 1.0
    assert d.camera.width == 64 and d.camera.fx == pytest.approx(500.0 * 64 / 480)
    heat = r.heatmap_message(d, "q_heatmap")
    back = messages.image_from_msg(messages.deserialize(heat.cdr, "sensor_msgs/msg/Image"))
    assert back.shape == (64, 64, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, heatmap_rgb(r.policy.q_heatmap(d.image.rgb), d.image.rgb, s.heatmap_overlay))
    quiet = PolicyRunner.from_settings(dataclasses.replace(s, publish_heatmap=False))
    assert quiet.heatmap_message(d, "q_heatmap") is None


def test_an_image_that_ages_past_the_limit_while_the_policy_decides_is_not_acted_on():
    import time

    from rlcg.policies import RandomPolicy
    from rlcg.sim.config import SimConfig

    class SlowPolicy(RandomPolicy):
        def act(self, obs):
            time.sleep(0.2)
            return super().act(obs)

    settings = PolicyNodeSettings(model="random", max_image_age_s=0.5)
    r = PolicyRunner(SlowPolicy(), settings, workspace_for(settings, SimConfig.load()))
    r.on_image_cdr(image_cdr(T0))
    # 0.35 s old when the policy starts, fresh by the rule; at least 0.55 s old when its grasp is ready
    with pytest.raises(StaleImageError, match="old when the grasp was ready"):
        r.decide(T0 + int(0.35 * S))
    assert r.state == RunnerState.IDLE and r.pending is None
    with pytest.raises(StaleImageError, match="no new camera image"):  # and it is not tried again
        r.decide(T0 + int(0.36 * S))
    r.on_image_cdr(image_cdr(T0 + int(0.4 * S), seed=1))
    d = r.decide(T0 + int(0.41 * S))
    assert d.image.stamp_ns == T0 + int(0.4 * S) and d.latency_s >= 0.2


def test_episode_messages_follow_the_bag_format(tiny_checkpoint):
    r = PolicyRunner.from_settings(PolicyNodeSettings(model=str(tiny_checkpoint), domain="real"))
    r.on_image_cdr(image_cdr(T0))
    r.on_camera_info_cdr(messages.serialize(messages.camera_info_msg(CameraIntrinsics(64, 64, 90, 90, 32, 32), T0)))
    d = r.decide(T0 + int(0.05 * S))
    goal = messages.deserialize(r.goal_cdr(d), "rlcg_interfaces/action/ExecuteGrasp_Goal")
    assert goal.episode_id == d.episode_id and goal.grasp.header.frame_id == topics.BASE_FRAME
    assert goal.z_offset == pytest.approx(d.action[3])
    start = r.start_episode(d)
    assert [m.topic for m in start] == [topics.EPISODE, topics.CAMERA_INFO, topics.IMAGE, topics.GRASP_POSE]
    r.on_result(type("R", (), {"success": False, "lifted_height": 0.0, "message": "nothing held"})(), T0 + 2 * S)
    r.on_image_cdr(image_cdr(T0 + 3 * S, seed=2))
    end = r.finish_if_ready(T0 + 3 * S)
    stamps = set()
    for m in start + end:
        msg = messages.deserialize(m.cdr, m.msgtype)
        stamps.add(messages.stamp_ns(msg.header))
    assert stamps == {T0}  # every message of the step carries the decision image's stamp
    outcome = messages.deserialize(end[-1].cdr, topics.TOPIC_TYPES[topics.OUTCOME])
    assert (outcome.success, outcome.done, outcome.reward, outcome.domain) == (False, True, 0.0, "real")
    np.testing.assert_allclose(outcome.action, d.action)
    assert outcome.policy_id == f"checkpoint:{tiny_checkpoint}"
    pose = messages.deserialize(start[-1].cdr, "geometry_msgs/msg/PoseStamped")
    assert pose.pose.position.z == pytest.approx(d.action[3])  # GRASP_POSE: z is the z_offset


def test_abandoned_goal_publishes_no_outcome():
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + 1))
    r.abandon("rejected", T0 + S)
    assert r.state == RunnerState.IDLE and r.pending is None
    assert r.finish_if_ready(T0 + 100 * S) == []


def test_next_image_timeout_still_closes_the_episode():
    r = runner_for(next_image_timeout_s=1.0)
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + 1))
    r.on_result(type("R", (), {"success": True, "lifted_height": 0.1, "message": ""})(), T0 + S)
    assert r.finish_if_ready(T0 + int(1.5 * S)) == []
    out = r.finish_if_ready(T0 + int(2.5 * S))
    assert [m.topic for m in out] == [topics.OUTCOME]


def test_workspace_overrides_and_target_bin(sim_config):
    b = workspace_for(PolicyNodeSettings(model="random", workspace_x=[0.5, 0.6], target_bin=2), sim_config)
    assert b.x == (0.5, 0.6)
    spacing = sim_config.world.bins.spacing
    assert b.y[0] == pytest.approx(sim_config.robot.workspace.y[0] + spacing)
    with pytest.raises(Exception, match="not a bin index"):
        workspace_for(PolicyNodeSettings(model="random", target_bin=7), sim_config)


def test_settings_validation_names_the_parameter():
    from rlcg.configio import ConfigError
    from rlcg.robot.params import settings_from_params

    with pytest.raises(ConfigError, match="max_image_age_s"):
        settings_from_params(PolicyNodeSettings, {"max_image_age_s": 0.0})
    with pytest.raises(ConfigError, match="cem_elites"):
        settings_from_params(PolicyNodeSettings, {"cem_elites": 100, "cem_population": 10})
    with pytest.raises(ConfigError, match="unknown field"):
        settings_from_params(PolicyNodeSettings, {"max_image_age": 1.0})


def test_fit_image_and_intrinsics_agree():
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[240, 320] = 255  # the principal point
    out = fit_image(rgb, 64)
    k = fit_intrinsics(CameraIntrinsics(640, 480, 500, 500, 320, 240), 64)
    assert out.shape == (64, 64, 3) and (k.cx, k.cy) == (32.0, 32.0)
    v, u = np.unravel_index(out[..., 0].argmax(), (64, 64))
    assert abs(u + 0.5 - k.cx) <= 1 and abs(v + 0.5 - k.cy) <= 1


def test_heatmap_colours():
    q = np.array([[0.0, 1.0], [math.nan, 0.5]])
    rgb = heatmap_rgb(q)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[1, 0]) == (0, 0, 0)
    assert rgb[0, 1].sum() > rgb[0, 0].sum()  # high Q is brighter


def test_random_model_needs_no_checkpoint():
    assert load_grasp_policy(PolicyNodeSettings(model="random")).name == "random"


def test_checkpoint_config_is_json(tiny_checkpoint):
    assert json.loads((tiny_checkpoint / "config.json").read_text())


# ----------------------------------------------------------------------------- found by the robot audit
RESULT = type("R", (), {"success": True, "lifted_height": 0.1, "message": ""})()


def test_a_frame_taken_during_the_grasp_is_not_acted_on_after_a_small_backward_clock_step():
    """The goal is given up at T0 + 1 s; the newest frame was taken at T0 + 0.95 s, during the grasp.
    The clock then steps back 0.1 s (more than the allowed skew): that frame, and the one already
    acted on, must not be acted on."""
    r = runner_for()
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + int(0.05 * S)))
    r.on_image_cdr(image_cdr(T0 + int(0.95 * S), seed=1))
    r.abandon("aborted", T0 + S)
    with pytest.raises(StaleImageError, match="no camera image"):
        r.decide(T0 + int(0.9 * S))
    r.on_image_cdr(image_cdr(T0 + int(0.92 * S), seed=2))  # the first frame after the jump
    assert r.decide(T0 + int(0.93 * S)).image.stamp_ns == T0 + int(0.92 * S)


def test_a_goal_without_a_result_is_given_up_and_its_late_result_closes_nothing():
    r = runner_for(max_execution_s=60.0)
    r.on_image_cdr(image_cdr(T0))
    first = r.decide(T0 + 1)
    r.start_episode(first)
    assert not r.overdue(T0 + 59 * S) and r.overdue(T0 + 61 * S)
    r.abandon("no result", T0 + 61 * S)
    r.on_image_cdr(image_cdr(T0 + 62 * S, seed=1))
    second = r.decide(T0 + 62 * S + 1)
    r.start_episode(second)
    with pytest.raises(RlcgError, match="arrived during episode"):
        r.on_result(RESULT, T0 + 63 * S, episode_id=first.episode_id)
    assert r.state == RunnerState.EXECUTING and r.pending is second and second.result is None
    assert r.overdue(T0)  # the clock went back past the goal's start: it would wait forever
    r.on_result(RESULT, T0 + 64 * S, episode_id=second.episode_id)
    assert r.state == RunnerState.AWAITING_NEXT_IMAGE


def test_a_clock_reset_while_awaiting_the_image_after_the_grasp_still_closes_the_episode():
    r = runner_for(next_image_timeout_s=10.0)
    r.on_image_cdr(image_cdr(T0))
    r.start_episode(r.decide(T0 + 1))
    r.on_result(RESULT, T0 + S)
    r.on_image_cdr(image_cdr(5 * S, seed=1))  # the simulator restarted: its clock begins again
    out = r.finish_if_ready(5 * S)
    assert [m.topic for m in out] == [topics.OUTCOME] and r.state == RunnerState.IDLE


def test_camera_info_of_another_size_or_frame_is_not_recorded_with_the_episode():
    r = runner_for()
    for info, recorded in [
        (CameraIntrinsics(1280, 720, 900, 900, 640, 360), False),
        (CameraIntrinsics(64, 64, 90, 90, 32, 32, frame_id="other_camera"), False),
        (CameraIntrinsics(64, 64, 90, 90, 32, 32), True),
    ]:
        r.state = RunnerState.IDLE
        r.on_camera_info_cdr(messages.serialize(messages.camera_info_msg(info, T0)))
        r.on_image_cdr(image_cdr(T0 + S))
        r.last_used_stamp_ns = -1
        d = r.decide(T0 + S + 1)
        assert (d.camera is not None) == recorded
        assert (topics.CAMERA_INFO in [m.topic for m in r.start_episode(d)]) == recorded


def test_a_cem_the_node_cannot_run_names_its_parameters_not_the_checkpoint():
    from rlcg.configio import ConfigError

    with pytest.raises(ConfigError, match="policy_node parameters cem_iterations/cem_population/cem_elites"):
        runner_for(model="default", cem_population=100_000)
