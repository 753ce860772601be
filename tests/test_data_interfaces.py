"""rlcg_interfaces: the .msg/.action files are the one source of the types the core writes and reads."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlcg.data import cdr, topics
from rlcg.data.encode import episode_messages
from rlcg.data.types import InterfaceError, _split_action, interface_definitions, typestore
from rlcg.paths import interfaces_dir

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "rlcg_interfaces"


def test_interfaces_dir_is_the_checkout_and_can_be_overridden(tmp_path, monkeypatch):
    assert interfaces_dir() == PKG
    copy = tmp_path / "rlcg_interfaces"
    shutil.copytree(PKG, copy)
    monkeypatch.setenv("RLCG_INTERFACES_DIR", str(copy))
    assert interfaces_dir() == copy
    monkeypatch.setenv("RLCG_INTERFACES_DIR", str(tmp_path / "missing"))
    assert interfaces_dir() == PKG  # an override without the files falls back to the checkout


def test_every_interface_file_is_built_by_colcon():
    cmake = (PKG / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|action)/\w+\.(?:msg|action))"', cmake))
    on_disk = {str(p.relative_to(PKG)) for p in [*PKG.glob("msg/*.msg"), *PKG.glob("action/*.action")]}
    assert listed == on_disk
    xml = (PKG / "package.xml").read_text()
    assert "<member_of_group>rosidl_interface_packages</member_of_group>" in xml
    assert "<build_type>ament_cmake</build_type>" in xml


@pytest.mark.parametrize("distro", ["jazzy", "humble"])
def test_types_are_registered_from_the_files(distro):
    store = typestore(distro)
    outcome = store.types["rlcg_interfaces/msg/GraspOutcome"]
    fields = set(outcome.__dataclass_fields__) - {"__msgtype__"}
    assert {
        "header", "episode_id", "step", "reward", "done", "success", "lifted_height", "q_value", "domain",
        "policy_id", "seed", "bin_index", "action",
    } <= fields  # fmt: skip
    goal = store.types["rlcg_interfaces/action/ExecuteGrasp_Goal"]
    assert {"grasp", "z_offset", "episode_id", "dry_run"} <= set(goal.__dataclass_fields__)
    result = store.types["rlcg_interfaces/action/ExecuteGrasp_Result"]
    assert {"success", "lifted_height", "message"} <= set(result.__dataclass_fields__)
    assert "stage" in store.types["rlcg_interfaces/action/ExecuteGrasp_Feedback"].__dataclass_fields__
    for topic, msgtype in topics.TOPIC_TYPES.items():
        assert msgtype in store.types, topic


def test_an_edited_msg_file_changes_the_type(tmp_path, monkeypatch):
    copy = tmp_path / "rlcg_interfaces"
    shutil.copytree(PKG, copy)
    path = copy / "msg" / "GraspOutcome.msg"
    path.write_text(path.read_text() + "float64 gripper_width\n")
    defs = interface_definitions(copy)
    assert "float64 gripper_width" in defs["rlcg_interfaces/msg/GraspOutcome"]


def test_action_files_need_two_separators():
    with pytest.raises(InterfaceError, match="two '---'"):
        _split_action("int32 a\n---\nint32 b\n")


def _messages(episodes):
    tick = iter(range(10**18, 10**18 + 10**6, 7))
    return [m for ep in episodes for m, _ in episode_messages(ep, lambda: next(tick))]


def test_direct_cdr_readers_agree_with_rosbags(episode_pair):
    store = typestore("jazzy")
    assert cdr.fast_path_valid()
    for out in _messages(episode_pair):
        raw = memoryview(bytes(store.serialize_cdr(out.msg, out.msgtype)))
        ref = store.deserialize_cdr(bytes(raw), out.msgtype)
        stamp = getattr(ref, "header", None)
        stamp = stamp.stamp.sec * 10**9 + stamp.stamp.nanosec if stamp is not None else None
        if out.topic in (topics.IMAGE, topics.NEXT_IMAGE):
            got = cdr.ImageFields(*cdr.image(raw))
            assert (got.stamp_ns, got.height, got.width, got.encoding, got.step) == (
                stamp, ref.height, ref.width, ref.encoding, ref.step
            )  # fmt: skip
            assert np.array_equal(got.data, ref.data)
        elif out.topic == topics.GRASP_POSE:
            s, frame, v = cdr.pose_stamped(raw)
            p, q = ref.pose.position, ref.pose.orientation
            assert (s, frame, v) == (stamp, ref.header.frame_id, (p.x, p.y, p.z, q.x, q.y, q.z, q.w))
        elif out.topic == topics.TF:
            (t,) = ref.transforms
            tr, r = t.transform.translation, t.transform.rotation
            assert cdr.tf_message(raw) == [
                (t.header.stamp.sec * 10**9 + t.header.stamp.nanosec, t.header.frame_id, t.child_frame_id,
                 (tr.x, tr.y, tr.z, r.x, r.y, r.z, r.w))
            ]  # fmt: skip
        elif out.topic == topics.OUTCOME:
            got = cdr.grasp_outcome(raw)
            for name in ("episode_id", "step", "done", "success", "lifted_height", "domain", "policy_id", "seed"):
                assert getattr(got, name) == getattr(ref, name), name
            assert got.reward == pytest.approx(ref.reward) and got.stamp_ns == stamp
            assert got.bin_index == ref.bin_index and list(got.action) == list(ref.action)
            assert math.isnan(got.q_value) == math.isnan(ref.q_value)
        elif out.topic == topics.EPISODE:
            got = cdr.episode_info(raw)
            assert (got.episode_id, got.seed, got.domain, got.policy_id, got.bin_index) == (
                ref.episode_id, ref.seed, ref.domain, ref.policy_id, ref.bin_index
            )  # fmt: skip


def test_direct_reader_handles_every_string_alignment():
    """Strings of every length shift the alignment of what follows: check them all."""
    store = typestore("jazzy")
    cls = store.types["rlcg_interfaces/msg/GraspOutcome"]
    header = store.types["std_msgs/msg/Header"]
    time_ = store.types["builtin_interfaces/msg/Time"]
    for n in range(1, 10):
        msg = cls(
            header=header(stamp=time_(sec=3, nanosec=4), frame_id="f" * n),
            episode_id="é" * n, step=n, reward=0.5, done=bool(n % 2), success=True, lifted_height=0.1 * n,
            q_value=0.25, domain="d" * (n + 1), policy_id="p" * (n + 2), seed=-(2**40) - n, bin_index=n - 5,
            action=np.array([1.0, -2.0, 0.5, 0.01 * n]),
        )  # fmt: skip
        got = cdr.grasp_outcome(memoryview(bytes(store.serialize_cdr(msg, cls.__msgtype__))))
        assert (got.episode_id, got.domain, got.policy_id, got.seed, got.bin_index) == (
            "é" * n, "d" * (n + 1), "p" * (n + 2), -(2**40) - n, n - 5
        )  # fmt: skip
        assert got.action == (1.0, -2.0, 0.5, 0.01 * n) and got.lifted_height == 0.1 * n


@pytest.fixture(scope="module")
def episode_pair():
    from data_helpers import real_episodes

    return real_episodes(2, attempts=2)
