"""The ROS graph of `sim.launch.py simulator:=pybullet record:=true`, run in one process without rclpy:
pybullet_sim_node, policy_node and recorder_node logic exchange the same CDR bytes the nodes put on
the wire. The bags are read back with rlcg's own episode decoder, as training reads them."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rlcg.data import topics
from rlcg.data.bags import Problems, find_bags
from rlcg.data.decode import EpisodeStream
from rlcg.robot import messages
from rlcg.robot.policy_runner import PolicyNodeSettings, PolicyRunner
from rlcg.robot.recorder_core import RecorderCore, RecorderNodeSettings
from rlcg.robot.sim_node import PyBulletSimCore, SimNodeSettings

MS = 1_000_000
GOAL = "rlcg_interfaces/action/ExecuteGrasp_Goal"


def read_episodes(bag_dir):
    problems = Problems()
    episodes = [ep for bag in find_bags(bag_dir) for ep in EpisodeStream(bag, problems)]
    return episodes, problems


def run_graph(tmp_path, episodes: int, seed: int = 3):
    sim = PyBulletSimCore.create(SimNodeSettings(seed=seed, attempts_per_scene=2))
    sim.start()
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random", domain="sim", seed=seed))
    recorder = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "bags"), max_episodes_per_bag=2))
    t = 1_700_000_000_000 * MS
    decisions, results, stages, bases = [], [], [], []

    def deliver(outgoing):
        for m in outgoing:
            recorder.on_message(m.topic, m.cdr, t)

    try:
        for _ in range(episodes):
            t += 100 * MS
            image, info = sim.camera_cdr(t)
            dynamic, _static = sim.tf_cdr(t)
            recorder.on_message(topics.TF, dynamic, t)
            (sent,) = messages.deserialize(dynamic, "tf2_msgs/msg/TFMessage").transforms
            truth = sim.world.scene.base_pose
            bases.append((sent, (truth.x, truth.y, truth.yaw)))
            runner.on_camera_info_cdr(info)
            runner.on_image_cdr(image)
            decision = runner.decide(t + 20 * MS)
            goal = messages.deserialize(runner.goal_cdr(decision), GOAL)  # what the action server receives
            deliver(runner.start_episode(decision))
            report = sim.execute(goal, stages.append)
            assert not report.result.rejected, report.result.message
            t += 2000 * MS
            runner.on_result(report.result, t)
            t += 100 * MS
            image_after, _ = sim.camera_cdr(t)
            runner.on_image_cdr(image_after)
            deliver(runner.finish_if_ready(t))
            decisions.append(decision)
            results.append(report)
    finally:
        recorder.close()
        sim.close()
    return decisions, results, recorder, stages, bases


def test_pybullet_graph_grasps_and_records_decodable_episodes(tmp_path):
    decisions, results, recorder, stages, bases = run_graph(tmp_path, episodes=3)
    assert recorder.stats.episodes_written == 3 and recorder.stats.episodes_dropped == 0
    assert "approach" in stages and "done" in stages
    bags = find_bags(tmp_path / "bags")
    assert len(bags) == 2  # max_episodes_per_bag=2: a second bag for the third episode
    episodes, problems = read_episodes(tmp_path / "bags")
    assert len(problems) == 0, problems.summary()
    assert [e.episode_id for e in episodes] == [d.episode_id for d in decisions]
    for ep, d, r, (sent, truth) in zip(episodes, decisions, results, bases, strict=True):
        assert ep.num_steps == 1 and ep.domain == "sim" and ep.policy == "random"
        np.testing.assert_allclose(ep.actions[0], d.action)
        assert bool(ep.successes[0]) == r.result.success
        assert ep.images.shape == (1, 64, 64, 3)
        np.testing.assert_array_equal(ep.images[0], d.image.rgb)
        assert ep.stamps[0] == d.image.stamp_ns
        # world -> base as the sim node sent it on /tf, read back by the decoder
        assert (sent.header.frame_id, sent.child_frame_id) == (topics.WORLD_FRAME, topics.BASE_FRAME)
        t, q = sent.transform.translation, sent.transform.rotation
        sent_yaw = 2 * math.atan2(q.z, q.w)  # a rotation about z only
        assert (q.x, q.y) == (0.0, 0.0) and sent_yaw == pytest.approx(truth[2], abs=1e-12)
        assert (t.x, t.y) == pytest.approx(truth[:2], abs=1e-12)
        assert ep.base_pose is not None
        np.testing.assert_allclose(ep.base_pose, (t.x, t.y, sent_yaw), rtol=0, atol=1e-9)


def test_sim_rejects_out_of_bounds_goal_without_simulating():
    sim = PyBulletSimCore.create(SimNodeSettings(seed=1))
    try:
        sim.start()
        before = sim.world.scene.objects[0].position
        cls = messages.msg_class(GOAL)
        goal = cls(
            grasp=messages.action_pose_msg([1.5, 0.0, 0.0, 0.0], "lbr_link_0", 1),
            z_offset=0.0,
            episode_id="x",
            dry_run=False,
        )
        report = sim.execute(goal)
        assert report.result.rejected and "outside the workspace" in report.result.message
        assert sim.attempts == 0 and sim.world.scene.objects[0].position == before
        goal.grasp.pose.position.x = 0.6
        goal.grasp.header.frame_id = "world"
        assert "frame" in sim.execute(goal).result.message
    finally:
        sim.close()


def test_sim_tf_matches_the_simulated_camera():
    """base -> camera on /tf_static is where PyBullet renders from, relative to the base pose that
    grasp actions are expressed in (world -> base on /tf)."""
    from rlcg.sim.geometry import rot_z

    sim = PyBulletSimCore.create(SimNodeSettings(seed=2))
    try:
        sim.start()
        dynamic, static = sim.tf_messages(5)
        (wb,) = dynamic.transforms
        (bc,) = static.transforms
        base = sim.world.scene.base_pose
        assert (wb.header.frame_id, wb.child_frame_id, bc.child_frame_id) == (
            "world",
            "lbr_link_0",
            "camera_optical_frame",
        )
        assert (wb.transform.translation.x, wb.transform.translation.y) == pytest.approx((base.x, base.y))
        cam_pos, _ = sim.world.camera_pose()
        rel = rot_z(base.yaw).T @ (cam_pos - np.array([base.x, base.y, 0.0]))
        t = bc.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], rel, atol=1e-9)
        _, info_cdr = sim.camera_cdr(5)
        info = messages.deserialize(info_cdr, "sensor_msgs/msg/CameraInfo")
        assert (info.width, info.height, info.header.frame_id) == (64, 64, "camera_optical_frame")
    finally:
        sim.close()


def test_recorder_drops_unfinished_and_foreign_episodes(tmp_path):
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    rgb = np.zeros((64, 64, 3), np.uint8)
    t = 10**18
    runner.on_image(messages.image_msg(rgb, t, "camera_optical_frame"))
    first = runner.start_episode(runner.decide(t + 1))
    for m in first:
        rec.on_message(m.topic, m.cdr, t)
    runner.abandon("aborted", t)
    runner.on_image(messages.image_msg(rgb + 1, t + 10, "camera_optical_frame"))
    kept = runner.decide(t + 11)
    second = runner.start_episode(kept)
    for m in second:
        note = rec.on_message(m.topic, m.cdr, t + 10)
    runner.on_result(type("R", (), {"success": True, "lifted_height": 0.1, "message": ""})(), t + 20)
    runner.on_image(messages.image_msg(rgb + 2, t + 30, "camera_optical_frame"))
    for m in runner.finish_if_ready(t + 30):
        note = rec.on_message(m.topic, m.cdr, t + 30)
    assert note.startswith("recorded episode")
    stray = messages.serialize(messages.image_msg(rgb, t + 40, "cam"))
    assert rec.on_message(topics.NEXT_IMAGE, stray, t + 40) is None  # held: its EpisodeInfo may be late
    rec.close()
    assert rec.stats.messages_ignored == 1  # it never came
    assert rec.stats.episodes_written == 1 and rec.stats.episodes_dropped == 1
    episodes, problems = read_episodes(tmp_path / "b")
    abandoned = messages.deserialize(first[0].cdr, topics.TOPIC_TYPES[topics.EPISODE]).episode_id
    assert abandoned != kept.episode_id
    assert [e.episode_id for e in episodes] == [kept.episode_id]  # the completed one, not the abandoned one
    np.testing.assert_array_equal(episodes[0].images[0], rgb + 1)
    assert len(problems) == 0


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from rlcg.robot import messages
    from rlcg.robot.policy_runner import PolicyNodeSettings, PolicyRunner
    from rlcg.robot.recorder_core import RecorderCore, RecorderNodeSettings

    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=sys.argv[1]))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    t = 10**18
    for k in range(3):
        t += 10**9
        runner.on_image(messages.image_msg(np.full((64, 64, 3), k, np.uint8), t, "camera_optical_frame"))
        out = runner.start_episode(runner.decide(t + 1))
        if k == 2:  # the third episode is in progress when the process dies
            for m in out:
                rec.on_message(m.topic, m.cdr, t)
            os._exit(9)
        runner.on_result(type("R", (), {"success": k == 0, "lifted_height": 0.1, "message": ""})(), t + 5)
        runner.on_image(messages.image_msg(np.full((64, 64, 3), 100 + k, np.uint8), t + 9, "camera_optical_frame"))
        out += runner.finish_if_ready(t + 9)
        for m in out:
            rec.on_message(m.topic, m.cdr, t)
    """
)


def test_a_crash_loses_no_completed_episode(tmp_path):
    bag_dir = tmp_path / "crash"
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(bag_dir)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    episodes, problems = read_episodes(bag_dir)
    assert len(episodes) == 2
    assert [bool(e.successes[0]) for e in episodes] == [True, False]


@pytest.mark.parametrize("storage", ["sqlite3"])
def test_recorder_other_storage(tmp_path, storage):
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / storage), storage=storage))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    t = 10**18
    runner.on_image(messages.image_msg(np.zeros((64, 64, 3), np.uint8), t, "camera_optical_frame"))
    out = runner.start_episode(runner.decide(t + 1))
    runner.on_result(type("R", (), {"success": True, "lifted_height": 0.1, "message": ""})(), t + 5)
    runner.on_image(messages.image_msg(np.ones((64, 64, 3), np.uint8), t + 9, "camera_optical_frame"))
    for m in out + runner.finish_if_ready(t + 9):
        rec.on_message(m.topic, m.cdr, t)
    rec.close()
    episodes, problems = read_episodes(tmp_path / storage)
    assert len(episodes) == 1 and len(problems) == 0


class _Result:
    success, lifted_height, message = True, 0.1, ""


def _episodes_of(runner, count, t0):
    """The policy node's messages of ``count`` episodes, each in publication order."""
    out = []
    for k in range(count):
        t = t0 + k * 10**9
        runner.on_image(messages.image_msg(np.full((64, 64, 3), k, np.uint8), t, "camera_optical_frame"))
        decision = runner.decide(t + 1)
        start = runner.start_episode(decision)
        runner.on_result(_Result(), t + 5)
        runner.on_image(messages.image_msg(np.full((64, 64, 3), 100 + k, np.uint8), t + 9, "camera_optical_frame"))
        out.append((decision.episode_id, start + runner.finish_if_ready(t + 9)))
    return out


def _swap(msgs, a, b):
    order = [m.topic for m in msgs]
    i, j = order.index(a), order.index(b)
    msgs = list(msgs)
    msgs[i], msgs[j] = msgs[j], msgs[i]
    return msgs


def test_recorder_writes_episodes_whose_messages_cross_between_topics(tmp_path):
    """ROS keeps order within a topic, not across topics: an outcome may overtake the image after
    the grasp, and an image its EpisodeInfo. Every such episode is written whole and decodes."""
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    episodes = _episodes_of(runner, 3, 10**18)
    crossings = [(topics.NEXT_IMAGE, topics.OUTCOME), (topics.EPISODE, topics.IMAGE), (topics.EPISODE, topics.OUTCOME)]
    notes = []
    for (_, msgs), (a, b) in zip(episodes, crossings):
        for m in _swap(msgs, a, b):
            notes.append(rec.on_message(m.topic, m.cdr, 10**18))  # a clock that stands still, too
    rec.close()
    assert [n for n in notes if n] == [f"recorded episode {eid} (success)" for eid, _ in episodes]
    decoded, problems = read_episodes(tmp_path / "b")
    assert [e.episode_id for e in decoded] == [eid for eid, _ in episodes] and len(problems) == 0


def test_recorder_keeps_log_times_increasing_when_the_clock_goes_back(tmp_path):
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    for k, (_, msgs) in enumerate(_episodes_of(runner, 3, 10**18)):
        clock = [10**18, 10**12, 10**15][k]  # a simulator reset between episodes
        for n, m in enumerate(msgs):
            rec.on_message(m.topic, m.cdr, clock + n)
    rec.close()
    decoded, problems = read_episodes(tmp_path / "b")
    assert len(decoded) == 3 and len(problems) == 0


def test_recorder_refuses_bad_bytes_and_foreign_outcomes_without_losing_the_open_episode(tmp_path):
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    (first, old), (second, msgs) = _episodes_of(runner, 2, 10**18)
    stale_outcome = next(m for m in old if m.topic == topics.OUTCOME)
    notes = []
    for m in msgs:
        if m.topic == topics.OUTCOME:
            notes.append(rec.on_message(topics.OUTCOME, b"\x00\x01\x00\x00garbage", 10**18))
            notes.append(rec.on_message(stale_outcome.topic, stale_outcome.cdr, 10**18))  # a repeat of the last one
        notes.append(rec.on_message(m.topic, m.cdr, 10**18))
    rec.close()
    notes = [n for n in notes if n]
    assert notes[0].startswith("ignored a message on /rlcg/grasp/outcome that does not decode")
    assert notes[1] == f"ignored an outcome of episode {first} while recording {second}"
    assert notes[2] == f"recorded episode {second} (success)"
    assert rec.stats.messages_bad == 1 and rec.stats.episodes_written == 1
    decoded, problems = read_episodes(tmp_path / "b")
    assert [e.episode_id for e in decoded] == [second] and len(problems) == 0


def test_recorder_drops_an_episode_whose_image_after_never_comes(tmp_path):
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    (first, msgs), (second, more) = _episodes_of(runner, 2, 10**18)
    notes = [rec.on_message(m.topic, m.cdr, 10**18) for m in msgs if m.topic != topics.NEXT_IMAGE]
    notes += [rec.on_message(m.topic, m.cdr, 10**18) for m in more]
    rec.close()
    notes = [n for n in notes if n]
    assert notes[0].startswith(f"dropped episode {first} (a new episode started before it was complete; missing ")
    assert topics.NEXT_IMAGE in notes[0] and notes[1] == f"recorded episode {second} (success)"
    decoded, problems = read_episodes(tmp_path / "b")
    assert [e.episode_id for e in decoded] == [second] and len(problems) == 0


def test_recorder_takes_an_image_after_with_its_own_later_stamp(tmp_path):
    """docs/data-format.md lets the image after carry its own capture stamp, as rlcg collect writes it."""
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    ((eid, msgs),) = _episodes_of(runner, 1, 10**18)
    seven = np.full((64, 64, 3), 7, np.uint8)
    later = messages.serialize(messages.image_msg(seven, 10**18 + 9, "camera_optical_frame"))
    notes = [rec.on_message(m.topic, later if m.topic == topics.NEXT_IMAGE else m.cdr, 10**18) for m in msgs]
    rec.close()
    assert notes[-1] == f"recorded episode {eid} (success)"
    decoded, problems = read_episodes(tmp_path / "b")
    assert len(decoded) == 1 and len(problems) == 0 and int(decoded[0].next_images[0][0, 0, 0]) == 7


def _tf_cdr(links, stamp):
    """A TFMessage of (parent, child, xyz, yaw) links stamped ``stamp``."""
    transforms = [
        messages.transform_msg(parent, child, xyz, (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)), stamp)
        for parent, child, xyz, yaw in links
    ]
    return messages.serialize(messages.tf_message(transforms), "tf2_msgs/msg/TFMessage")


def test_recorder_composes_the_base_pose_through_tf_static_as_on_the_real_robot(tmp_path):
    """Real robot and Gazebo: world -> lbr_floating_link and lbr_floating_link -> lbr_link_0 come on
    /tf_static, never world -> lbr_link_0 in one message. The recorder composes the chain."""
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b")))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    t0 = 10**18
    rec.on_message(topics.TF_STATIC, _tf_cdr([("world", "lbr_floating_link", (0.1, 0.4, 0.0), 0.5)], t0 - 10**12), t0)
    rec.on_message(topics.TF_STATIC, _tf_cdr([("lbr_floating_link", "lbr_link_0", (0.2, 0.0, 0.0), 0.25)], 0), t0)
    rec.on_message(topics.TF, _tf_cdr([("world", "camera_link", (1, 1, 1), 0.0)], t0), t0)  # not on the chain
    for _, msgs in _episodes_of(runner, 1, t0):
        for m in msgs:
            rec.on_message(m.topic, m.cdr, t0)
    rec.close()
    (episode,), problems = read_episodes(tmp_path / "b")
    assert len(problems) == 0
    x, y, yaw = episode.base_pose  # world -> floating (0.1, 0.4, yaw 0.5), then (0.2, 0, yaw 0.25) in it
    assert (x, y, yaw) == pytest.approx((0.1 + 0.2 * math.cos(0.5), 0.4 + 0.2 * math.sin(0.5), 0.75))


def test_recorder_leaves_out_a_base_pose_whose_publisher_stopped(tmp_path):
    """A moving world -> base transform last sent long before the episode is not this episode's pose."""
    rec = RecorderCore.create(RecorderNodeSettings(bag_dir=str(tmp_path / "b"), max_tf_age_s=5.0))
    runner = PolicyRunner.from_settings(PolicyNodeSettings(model="random"))
    t0 = 10**18
    rec.on_message(topics.TF, _tf_cdr([("world", "lbr_link_0", (0.0, 0.4, 0.0), 0.0)], t0 - 10 * 10**9), t0)
    notes = []
    (_, first), (_, second) = _episodes_of(runner, 2, t0)
    for m in first:
        notes.append(rec.on_message(m.topic, m.cdr, t0))
    rec.on_message(topics.TF, _tf_cdr([("world", "lbr_link_0", (0.0, -0.4, 0.0), 0.1)], t0 + 10**9), t0 + 10**9)
    for m in second:
        notes.append(rec.on_message(m.topic, m.cdr, t0 + 10**9))
    rec.close()
    assert any(n and "base pose not recorded" in n and "10.0 s old" in n for n in notes)
    episodes, problems = read_episodes(tmp_path / "b")
    assert len(problems) == 0 and len(episodes) == 2
    assert episodes[0].base_pose is None
    assert episodes[1].base_pose == pytest.approx((0.0, -0.4, 0.1))
