"""Recording episodes as rosbag2: collect -> info -> ingest round trip, no overwriting, splitting,
both storages and distros, the raw (CDR) API, and surviving SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import real_episodes, storage_file, transitions_of

from rlcg.cli import main
from rlcg.data import topics
from rlcg.data.dataset import TransitionDataset
from rlcg.data.encode import episode_messages
from rlcg.data.ingest import ingest
from rlcg.data.recorder import BagExistsError, EpisodeRecorder, RecorderError
from rlcg.data.types import typestore


def assert_same_transitions(ds: TransitionDataset, episodes) -> None:
    want = transitions_of(episodes)
    assert len(ds) == len(want["rewards"])
    for name, value in want.items():
        got = np.asarray(getattr(ds, name))
        assert got.dtype == value.dtype, name
        assert np.array_equal(got, value), name


def test_collect_info_ingest_round_trip(tmp_path, capsys):
    """`rlcg collect` writes bags, `rlcg data info` reads them, and `rlcg data ingest` builds a dataset
    whose transitions equal what was collected: byte-equal images, equal actions and rewards."""
    args = ["--policy", "random", "--episodes", "4", "--attempts", "2", "--seed", "11", "--no-progress"]
    assert main(["collect", *args, "--out", str(tmp_path / "bags")]) == 0
    capsys.readouterr()

    assert main(["data", "info", str(tmp_path / "bags"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 4 and info["rejected_episodes"] == 0 and info["problems"] == {}
    assert info["domains"] == {"sim": 4} and info["image_sizes"] == {"64x64": 4}
    assert info["topics"][topics.EPISODE]["count"] == 4
    assert info["topics"][topics.IMAGE]["count"] == info["attempts"]

    assert main(["data", "ingest", str(tmp_path / "bags"), "--out", str(tmp_path / "ds"), "--no-progress"]) == 0
    assert "ingested 4 episodes" in capsys.readouterr().out
    reference = real_episodes(4, attempts=2, base_seed=11)
    ds = TransitionDataset.open(tmp_path / "ds")
    assert_same_transitions(ds, reference)
    assert [e["episode_id"] for e in ds.episodes] == [ep.meta.episode_id for ep in reference]
    assert info["successes"] == sum(ep.success for ep in reference)


def test_sim_record_writes_a_bag(tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["sim", "--policy", "random", "--episodes", "2", "--no-progress", "--record", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["episodes_0000"]
    assert len(TransitionDataset.open(out)) == 2


def test_never_overwrites_a_bag(tmp_path, capsys):
    eps = real_episodes(1)
    with EpisodeRecorder(tmp_path / "out") as rec:
        rec.write(eps[0])
    bag_file = storage_file(rec.bags[0])
    before = (bag_file.stat().st_size, bag_file.stat().st_mtime_ns)
    for target in (tmp_path / "out", rec.bags[0]):
        with pytest.raises(BagExistsError, match="never overwrites"):
            EpisodeRecorder(target)
    # The command line reports it without a traceback (exit 2), before any episode is run.
    code = main(["collect", "--policy", "random", "--episodes", "1", "--no-progress", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (bag_file.stat().st_size, bag_file.stat().st_mtime_ns) == before
    # A recorder whose next bag name is taken by someone else stops rather than write into it.
    rec2 = EpisodeRecorder(tmp_path / "fresh")
    (tmp_path / "fresh" / "episodes_0000").mkdir(parents=True)
    with pytest.raises(BagExistsError):
        rec2.write(eps[0])


def test_collect_never_records_into_an_ingested_dataset(tmp_path, capsys):
    with EpisodeRecorder(tmp_path / "bags") as rec:
        rec.write(real_episodes(1)[0])
    ingest([tmp_path / "bags"], tmp_path / "ds")
    before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    argv = ["collect", "--policy", "random", "--episodes", "1", "--no-progress", "--out", str(tmp_path / "ds")]
    assert main(argv) == 2
    assert "is an ingested dataset" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == before


def test_bags_split_by_episode_count_and_size(tmp_path):
    eps = real_episodes(5)
    with EpisodeRecorder(tmp_path / "n", max_episodes_per_bag=2) as rec:
        for ep in eps:
            rec.write(ep)
    assert [b.name for b in rec.bags] == ["episodes_0000", "episodes_0001", "episodes_0002"]
    with EpisodeRecorder(tmp_path / "b", max_bag_bytes=1) as rec_b:
        for ep in eps[:3]:
            rec_b.write(ep)
    assert len(rec_b.bags) == 3  # every episode fills its bag
    ds = TransitionDataset.open(tmp_path / "n")
    assert_same_transitions(ds, eps)


@pytest.mark.parametrize(("storage", "distro", "version"), [("sqlite3", "humble", 8), ("mcap", "humble", 8)])
def test_other_storage_and_distro(tmp_path, storage, distro, version):
    from rosbags.rosbag2 import Reader

    eps = real_episodes(3, attempts=2)
    with EpisodeRecorder(tmp_path / "rec", storage=storage, distro=distro) as rec:
        for ep in eps:
            rec.write(ep)
    with Reader(rec.bags[0]) as reader:
        assert {c.topic for c in reader.connections} == set(topics.TOPIC_TYPES)
        assert reader.message_count == sum(c.msgcount for c in reader.connections) > 0
    meta = yaml.safe_load((rec.bags[0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == version and meta["storage_identifier"] == storage
    assert_same_transitions(TransitionDataset.open(tmp_path / "rec"), eps)


def test_bad_recorder_arguments(tmp_path):
    with pytest.raises(RecorderError, match="storage"):
        EpisodeRecorder(tmp_path / "x", storage="rosbag1")
    with pytest.raises(RecorderError, match="distro"):
        EpisodeRecorder(tmp_path / "x", distro="noetic")


def test_raw_api_writes_what_write_writes(tmp_path):
    """The ROS recorder node hands CDR bytes: the same messages give the same dataset."""
    eps = real_episodes(3, attempts=2)
    store = typestore("jazzy")
    with EpisodeRecorder(tmp_path / "raw") as rec:
        tick = iter(range(10**18, 10**18 + 10**9, 1000))
        for ep in eps:
            for out, t in episode_messages(ep, lambda: next(tick)):
                rec.write_raw(out.topic, out.msgtype, bytes(store.serialize_cdr(out.msg, out.msgtype)), t)
            rec.end_episode()
        with pytest.raises(RecorderError, match="carries"):
            rec.write_raw(topics.IMAGE, "sensor_msgs/msg/CompressedImage", b"\0\1\0\0", 10**18 + 10**9)
        with pytest.raises(RecorderError, match="unknown"):
            rec.write_raw("/other", "my_msgs/msg/Nope", b"\0\1\0\0", 10**18 + 10**9)
    assert rec.episodes == 3
    assert_same_transitions(TransitionDataset.open(tmp_path / "raw"), eps)


KILL_CHILD = textwrap.dedent(
    """
    import sys, time
    from rlcg.data.recorder import EpisodeRecorder
    from rlcg.data.types import typestore
    from rlcg.data.encode import episode_messages
    from rlcg.rollout import EpisodeRunner, RolloutSpec, episode_seed

    out, storage, image_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = typestore("jazzy")
    rec = EpisodeRecorder(out, storage=storage)
    with EpisodeRunner(RolloutSpec(policy="random", image_size=image_size), 1) as runner:
        for i, ep in enumerate(runner.run([episode_seed(5, i) for i in range(1000)])):
            if i < 3:
                rec.write(ep)
                print("done", ep.meta.episode_id, flush=True)
                continue
            # An episode through the raw API, cut before its outcome, with a camera stream recorded
            # alongside: over 3 MB, so part of it reaches the file (the rosbags MCAP writer closes a
            # chunk at 1 MiB; SQLite spills its page cache into the database, backed by its journal).
            messages = list(episode_messages(ep, rec._clock))
            for out, t in messages[: len(messages) - 1]:
                rec.write_raw(out.topic, out.msgtype, bytes(store.serialize_cdr(out.msg, out.msgtype)), t)
            image = next(out for out, _ in messages if out.topic == "/rlcg/camera/image_raw")
            for _ in range(16):
                cdr = bytes(store.serialize_cdr(image.msg, image.msgtype))
                rec.write_raw("/camera/stream", image.msgtype, cdr, rec._clock())
            print("partial", ep.meta.episode_id, flush=True)
            time.sleep(60)
    """
)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sigkill_keeps_every_completed_episode(tmp_path, storage):
    image_size = 256
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    out = tmp_path / "bags"
    child = subprocess.Popen(
        [sys.executable, str(script), str(out), storage, str(image_size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ | {"TMPDIR": str(tmp_path)},  # a killed process cannot remove its scratch files
    )
    done = []
    try:
        for line in child.stdout:  # PyBullet prints to stdout too: only our lines count
            if line.startswith("partial "):
                break
            if line.startswith("done "):
                done.append(line.split()[1])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and len(done) == 3

    db_journal = storage_file(out / "episodes_0000").with_suffix(".db3-journal")
    if storage == "sqlite3":
        assert db_journal.exists()  # a hot journal: the reader must roll the unfinished episode back
    report = ingest([out], tmp_path / "ds", progress=False)
    kinds = report.problems.counts
    ds = TransitionDataset.open(tmp_path / "ds")
    assert [e["episode_id"] for e in ds.episodes] == done
    assert_same_transitions(ds, real_episodes(3, base_seed=5, image_size=image_size))
    if storage == "mcap":
        # No footer (the recording was cut off), and part of the unfinished episode reached the file:
        # it is reported, not ingested.
        assert kinds == {"truncated": 1, "missing_outcome": 1}, report.problems.items
        missing = [p for p in report.problems.items if p.kind == "missing_outcome"][0]
        assert missing.file == str(storage_file(out / "episodes_0000"))
        assert missing.episode.startswith("sim-") and "cut off" in missing.text
        # A second implementation reads the same messages up to the cut.
        from mcap.exceptions import EndOfFile
        from mcap.records import Message
        from mcap.stream_reader import StreamReader

        count = 0
        with pytest.raises(EndOfFile), storage_file(out / "episodes_0000").open("rb") as f:
            for record in StreamReader(f).records:
                count += isinstance(record, Message)
        assert count >= 3 * 7
    else:
        assert kinds == {} and not db_journal.exists()  # rolled back: the unfinished episode is gone
        # rosbags' own reader opens the killed bag through the metadata.yaml written after each episode.
        from rosbags.rosbag2 import Reader

        with Reader(out / "episodes_0000") as reader:
            assert sum(1 for c, _, _ in reader.messages() if c.topic == topics.OUTCOME) == 3


def test_an_episode_that_cannot_be_recorded_leaves_nothing_of_itself(tmp_path):
    import dataclasses

    good = real_episodes(3, base_seed=60)
    bad_step = dataclasses.replace(good[1].steps[0], image=good[1].steps[0].image[..., 0])  # 2-D: no encoding
    bad = dataclasses.replace(good[1], steps=[bad_step])
    with EpisodeRecorder(tmp_path / "rec") as rec:
        rec.write(good[0])
        with pytest.raises(RecorderError, match="nothing of it was written"):
            rec.write(bad)
        rec.write(good[2])
    report = ingest([tmp_path / "rec"], tmp_path / "ds", progress=False)
    assert report.episodes == 2 and not report.problems.items  # no half episode without its outcome
    assert_same_transitions(TransitionDataset.open(tmp_path / "ds"), [good[0], good[2]])


def test_a_bag_directory_given_with_a_tilde_goes_to_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with EpisodeRecorder("~/rlcg_bags/run") as rec:  # as `bag_dir:=~/rlcg_bags/run` reaches the node
        rec.write(real_episodes(1, base_seed=70)[0])
    assert rec.bags[0].parent == tmp_path / "home" / "rlcg_bags" / "run"
    assert not Path("~").exists()


def test_ctrl_c_during_collect_keeps_the_finished_episodes_and_prints_one_line(tmp_path):
    """Ctrl-C reaches the whole process group, workers included: collect closes its bag with every
    finished episode, says how many, and no worker prints a traceback."""
    out = tmp_path / "bags"
    child = subprocess.Popen(
        [sys.executable, "-m", "rlcg.cli", "collect", "--episodes", "400", "--workers", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        env=os.environ | {"TMPDIR": str(tmp_path)},
    )
    seen = b""
    try:
        while b"3/400" not in seen:  # the progress bar after the third episode
            chunk = os.read(child.stderr.fileno(), 4096)
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        os.killpg(child.pid, signal.SIGINT)
        rest, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    lines = (seen + err).decode().replace("\r", "\n").splitlines()
    last = lines[-1]
    assert child.returncode == 130 and rest == b""
    assert not [line for line in lines if "Traceback" in line or "Error" in line], lines
    assert last.startswith("interrupted: ") and last.endswith(f"finished episodes kept in {out}"), last
    kept = int(last.split()[1])
    assert kept >= 3
    report = ingest([out], tmp_path / "ds", progress=False)
    assert report.episodes == kept and not report.problems.items
