"""Bad input to `rlcg data ingest`: each case is a real bag file crafted to be wrong in one way. The bad
episode is skipped (or the bad part converted) with a counted warning naming the file and episode, and
everything else in the bag is kept."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from data_helpers import (
    chunk_offsets,
    real_episodes,
    rewrite_with_chunk_crcs,
    storage_file,
    transitions_of,
    write_bag,
)

from rlcg.data import topics
from rlcg.data.dataset import TransitionDataset
from rlcg.data.encode import OutMessage, image_msg
from rlcg.data.info import bag_info
from rlcg.data.ingest import NothingIngestedError, ingest
from rlcg.data.recorder import EpisodeRecorder
from rlcg.data.store import read_index

N = 4


@pytest.fixture(scope="module")
def episodes():
    return real_episodes(N)


def ids(eps):
    return [ep.meta.episode_id for ep in eps]


def check(tmp_path, bag, kind, count, kept, bad_episode=None, converted=False):
    """Ingest ``bag``; exactly ``count`` ``kind`` problems (naming the bag's file and ``bad_episode``),
    and a dataset holding exactly the episodes ``kept`` with their data intact."""
    report = ingest([bag], tmp_path / "ds", progress=False)
    found = [p for p in report.problems.items if p.kind == kind]
    assert len(found) == count, report.problems.items
    for p in found:
        assert p.file == str(storage_file(bag))
        if bad_episode is not None:
            assert p.episode == bad_episode
    ds = TransitionDataset.open(tmp_path / "ds")
    assert [e["episode_id"] for e in ds.episodes] == ids(kept)
    if not converted:
        want = transitions_of(kept)
        for name, value in want.items():
            assert np.array_equal(np.asarray(getattr(ds, name)), value), name
    return report, ds


def edit_episode(index, fn):
    """An ``edit`` hook applying ``fn`` to the message list of episode ``index`` only."""
    return lambda i, messages: fn(messages) if i == index else messages


def replace_topic(messages, topic, make):
    return [(OutMessage(o.topic, o.msgtype, make(o)), t) if o.topic == topic else (o, t) for o, t in messages]


def _recorded(tmp_path, episodes):
    """A bag as the recorder writes it (one chunk per episode, a summary) and its MCAP file."""
    with EpisodeRecorder(tmp_path / "rec") as rec:
        for ep in episodes:
            rec.write(ep)
    return rec.bags[0], storage_file(rec.bags[0])


# ----------------------------------------------------------------------------- damaged files
def test_truncated_bag_keeps_the_episodes_before_the_cut(tmp_path, episodes):
    bag, mcap = _recorded(tmp_path, episodes)  # the recorder closes one chunk per episode
    chunks = chunk_offsets(mcap)
    assert len(chunks) == N
    offset, length = chunks[2]
    with mcap.open("r+b") as f:
        f.truncate(offset + length // 2)  # cut inside the third episode
    report, _ = check(tmp_path, bag, "truncated", 1, episodes[:2])
    assert "ends inside a record" in report.problems.items[0].text


def test_a_damaged_record_length_in_a_whole_file_is_corrupt_not_truncated(tmp_path, episodes):
    bag, mcap = _recorded(tmp_path, episodes)
    offset, _ = chunk_offsets(mcap)[2]
    data = bytearray(mcap.read_bytes())
    data[offset + 1 : offset + 9] = (2**40).to_bytes(8, "little")  # the chunk record's own length
    mcap.write_bytes(bytes(data))
    report, _ = check(tmp_path, bag, "corrupt", 1, episodes[:2])  # reading stops there
    assert "past the end of the file" in report.problems.items[0].text


@pytest.mark.parametrize("chunk", [0, 1])  # the first chunk defines the channels; the summary does too
def test_corrupt_chunk_is_skipped_and_the_rest_kept(tmp_path, episodes, chunk):
    bag, mcap = _recorded(tmp_path, episodes)
    offset, length = chunk_offsets(mcap)[chunk]
    data = bytearray(mcap.read_bytes())
    # Inside the chunk (past its 9-byte record header and 40-byte chunk header) the first record's
    # length field: make it run past the chunk.
    data[offset + 9 + 40 + 1 : offset + 9 + 40 + 9] = (2**40).to_bytes(8, "little")
    mcap.write_bytes(bytes(data))
    kept = [ep for i, ep in enumerate(episodes) if i != chunk]
    report, _ = check(tmp_path, bag, "corrupt", 1, kept)
    assert f"at byte {offset}" in report.problems.items[0].text


def test_corrupt_message_rejects_its_episode(tmp_path, episodes):
    garbage = b"\x00\x01\x00\x00" + b"\xff" * 12  # valid encapsulation, then nonsense string lengths
    bag = write_bag(
        tmp_path / "bag",
        episodes,
        edit_episode(2, lambda m: replace_topic(m, topics.OUTCOME, lambda o: garbage)),
    )
    check(tmp_path, bag, "corrupt_message", 1, [*episodes[:2], episodes[3]], ids(episodes)[2])


def test_files_that_are_not_bags(tmp_path, episodes):
    good = write_bag(tmp_path / "good", episodes[:2])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.mcap").write_bytes(b"not an mcap file at all" * 10)
    (tmp_path / "junk2").mkdir()
    (tmp_path / "junk2" / "junk2.db3").write_bytes(b"SQLite format 3\x00" + b"\x13" * 200)
    report = ingest([tmp_path], tmp_path / "ds", progress=False)
    assert report.episodes == 2 and report.bags == 3
    bad = {p.file: p.kind for p in report.problems.items}
    assert bad == {str(tmp_path / "junk" / "junk.mcap"): "corrupt", str(tmp_path / "junk2" / "junk2.db3"): "corrupt"}
    assert len(TransitionDataset.open(tmp_path / "ds")) == 2
    with pytest.raises(NothingIngestedError, match="no usable episode"):
        ingest([tmp_path / "junk"], tmp_path / "ds2", progress=False)
    assert not (tmp_path / "ds2").exists()
    assert good.exists()


# ----------------------------------------------------------------------------- bad episodes
def test_missing_topic(tmp_path, episodes):
    bag = write_bag(
        tmp_path / "bag", episodes, edit_episode(1, lambda m: [(o, t) for o, t in m if o.topic != topics.GRASP_POSE])
    )
    report, _ = check(tmp_path, bag, "missing_topic", 1, [episodes[0], *episodes[2:]], ids(episodes)[1])
    assert topics.GRASP_POSE in report.problems.items[0].text


def test_a_topic_missing_from_the_whole_bag(tmp_path, episodes):
    bag = write_bag(tmp_path / "bag", episodes, lambda i, m: [(o, t) for o, t in m if o.topic != topics.NEXT_IMAGE])
    with pytest.raises(NothingIngestedError, match=f"{N} missing_topic"):
        ingest([bag], tmp_path / "ds", progress=False)


def _as_encoding(image: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    if encoding == "bgr8":
        return image[..., ::-1], 3
    if encoding == "rgba8":
        return np.concatenate([image, np.full(image.shape[:2] + (1,), 200, np.uint8)], axis=2), 4
    if encoding == "mono8":
        return image[..., 1:2], 1
    return np.zeros(image.shape[:2] + (2,), np.uint8), 2  # 16UC1: two bytes per pixel


def test_image_encodings_are_converted_or_rejected(tmp_path, episodes):
    encodings = ["bgr8", "rgba8", "mono8", "16UC1"]

    def recode(i, messages):
        def make(o):
            pixels, channels = _as_encoding(o.msg.data.reshape(o.msg.height, o.msg.width, 3), encodings[i])
            m = image_msg(np.zeros((o.msg.height, o.msg.width, 3), np.uint8), 0)
            return dataclasses.replace(
                m, header=o.msg.header, encoding=encodings[i], step=o.msg.width * channels, data=pixels.reshape(-1)
            )

        return replace_topic(replace_topic(messages, topics.IMAGE, make), topics.NEXT_IMAGE, make)

    bag = write_bag(tmp_path / "bag", episodes, recode)
    report, ds = check(tmp_path, bag, "bad_encoding", 1, episodes[:3], ids(episodes)[3], converted=True)
    assert "16UC1" in [p for p in report.problems.items if p.kind == "bad_encoding"][0].text
    notes = [p for p in report.problems.items if p.kind == "converted_encoding"]
    assert [p.episode for p in notes] == ids(episodes)[:3]  # conversions are counted and named too
    for k, ep in enumerate(episodes[:3]):
        for column, original in (("images", ep.steps[0].image), ("next_images", ep.steps[0].next_image)):
            want = np.repeat(original[..., 1:2], 3, axis=2) if encodings[k] == "mono8" else original
            assert np.array_equal(getattr(ds, column)[k], want), (encodings[k], column)


def test_image_size_differing_from_the_rest(tmp_path, episodes):
    def shrink(messages):
        def make(o):
            small = o.msg.data.reshape(o.msg.height, o.msg.width, 3)[::2, ::2]
            return dataclasses.replace(image_msg(small, 0), header=o.msg.header)

        return replace_topic(replace_topic(messages, topics.IMAGE, make), topics.NEXT_IMAGE, make)

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(2, shrink))
    report, ds = check(tmp_path, bag, "image_size", 1, [*episodes[:2], episodes[3]], ids(episodes)[2])
    assert "32x32" in report.problems.items[0].text and ds.image_size == (64, 64)


def test_nan_in_a_pose(tmp_path, episodes):
    def nan_pose(o):
        o.msg.pose.position.x = math.nan
        return o.msg

    bag = write_bag(
        tmp_path / "bag", episodes, edit_episode(1, lambda m: replace_topic(m, topics.GRASP_POSE, nan_pose))
    )
    check(tmp_path, bag, "nan_pose", 1, [episodes[0], *episodes[2:]], ids(episodes)[1])


def test_nan_in_the_base_pose(tmp_path, episodes):
    def nan_tf(o):
        o.msg.transforms[0].transform.rotation.w = math.nan
        return o.msg

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(3, lambda m: replace_topic(m, topics.TF, nan_tf)))
    check(tmp_path, bag, "nan_pose", 1, episodes[:3], ids(episodes)[3])


def test_duplicate_timestamp_drops_the_copy_and_keeps_the_episode(tmp_path, episodes):
    def duplicate_image(messages):
        k = next(i for i, (o, _) in enumerate(messages) if o.topic == topics.IMAGE)
        return messages[: k + 1] + [messages[k]] + messages[k + 1 :]

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(1, duplicate_image))
    report, _ = check(tmp_path, bag, "duplicate_timestamp", 1, episodes, ids(episodes)[1])
    assert report.rejected_episodes == 0


def test_out_of_order_timestamps_reject_the_episode(tmp_path, episodes):
    def swap_times(messages):
        i = next(k for k, (o, _) in enumerate(messages) if o.topic == topics.GRASP_POSE)
        (a, ta), (b, tb) = messages[i], messages[i + 1]
        return [*messages[:i], (a, tb), (b, ta), *messages[i + 2 :]]

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(2, swap_times))
    check(tmp_path, bag, "out_of_order", 1, [*episodes[:2], episodes[3]], ids(episodes)[2])


def test_episode_without_its_outcome(tmp_path, episodes):
    bag = write_bag(
        tmp_path / "bag", episodes, edit_episode(1, lambda m: [(o, t) for o, t in m if o.topic != topics.OUTCOME])
    )
    report, _ = check(tmp_path, bag, "missing_outcome", 1, [episodes[0], *episodes[2:]], ids(episodes)[1])
    assert "new episode began" in report.problems.items[0].text


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_problems_in_both_storages_name_the_episode(tmp_path, episodes, storage):
    bag = write_bag(
        tmp_path / "bag",
        episodes,
        edit_episode(0, lambda m: [(o, t) for o, t in m if o.topic != topics.OUTCOME]),
        storage=storage,
    )
    check(tmp_path, bag, "missing_outcome", 1, episodes[1:], ids(episodes)[0])


def test_zstd_compressed_chunks_are_read_and_checked(tmp_path, episodes):
    bag = write_bag(tmp_path / "bag", episodes, zstd_chunks=True)
    check(tmp_path, bag, "corrupt", 0, episodes)
    mcap = storage_file(bag)
    (offset, length), *_ = chunk_offsets(mcap)
    data = bytearray(mcap.read_bytes())
    data[offset + length - 20 : offset + length - 10] = b"\x00" * 10  # damage the compressed bytes
    mcap.write_bytes(bytes(data))
    # The rosbags writer put all episodes in one chunk: all are lost, which is an error, not a dataset.
    with pytest.raises(NothingIngestedError, match="1 corrupt"):
        ingest([bag], tmp_path / "ds2", progress=False)
    (problem,) = bag_info(bag)["problem_list"]
    assert "cannot decompress the zstd chunk" in problem and str(mcap) in problem


def test_a_chunk_whose_crc_does_not_match_is_corrupt_not_read(tmp_path, episodes):
    """Bags of `ros2 bag record` (MCAP C++ writer) carry chunk CRCs: a flipped byte in a chunk
    (here inside an image's pixels, where the message would still decode) is found by the CRC, and
    the chunk is skipped rather than its damaged image going into the dataset."""
    bag = rewrite_with_chunk_crcs(write_bag(tmp_path / "bag", episodes))  # one chunk per message
    check(tmp_path, bag, "corrupt", 0, episodes)  # the CRC'd chunks read back whole
    mcap = storage_file(bag)
    data = bytearray(mcap.read_bytes())
    pixels = data.index(episodes[2].steps[0].image.tobytes()[:256])  # the third episode's image
    (offset, length), *_ = [(o, n) for o, n in chunk_offsets(mcap) if o < pixels < o + n]
    assert int.from_bytes(data[offset + 9 + 24 : offset + 9 + 28], "little") != 0  # the chunk has a CRC
    data[pixels + 100] ^= 0x01
    mcap.write_bytes(bytes(data))
    report, _ = check(tmp_path / "after", bag, "corrupt", 1, [*episodes[:2], episodes[3]])
    (problem,) = [p for p in report.problems.items if p.kind == "corrupt"]
    assert "chunk CRC mismatch" in problem.text and f"at byte {offset}" in problem.text
    # the episode that lost its image to the skipped chunk is rejected, not kept with a hole
    assert [p.episode for p in report.problems.items if p.kind == "missing_topic"] == [ids(episodes)[2]]
    info = bag_info(bag)
    assert any("[corrupt]" in line and "chunk CRC mismatch" in line for line in info["problem_list"])


def test_the_recorder_s_chunks_carry_crcs_so_a_flipped_pixel_is_found(tmp_path, episodes):
    """rlcg's own bags carry chunk CRCs too (the rosbags writer leaves them 0, none): the mcap
    package's reader verifies them, and a pixel flipped on disk is reported, not ingested."""
    from mcap.reader import make_reader

    from rlcg.data.recorder import CHUNK_CRC_OFFSET

    bag, mcap = _recorded(tmp_path, episodes)
    chunks = chunk_offsets(mcap)
    data = bytearray(mcap.read_bytes())
    assert len(chunks) == N
    assert all(int.from_bytes(data[o + CHUNK_CRC_OFFSET : o + CHUNK_CRC_OFFSET + 4], "little") for o, _ in chunks)
    with mcap.open("rb") as f:  # an independent reader checks every CRC
        assert sum(1 for _ in make_reader(f, validate_crcs=True).iter_messages()) == 7 * N
    middle = episodes[1].steps[0].image[32].tobytes()  # a row through the bin: this scene's own pixels
    pixels = data.index(middle)
    assert data.count(middle) == 1
    (offset, _), *_ = [(o, n) for o, n in chunks if o < pixels < o + n]
    data[pixels + 100] ^= 0x01
    mcap.write_bytes(bytes(data))
    report, _ = check(tmp_path, bag, "corrupt", 1, [episodes[0], *episodes[2:]])
    (problem,) = report.problems.items
    assert "chunk CRC mismatch" in problem.text and f"at byte {offset}" in problem.text


# ----------------------------------------------------------------------------- damage found by an audit
def test_a_chunk_whose_compression_name_is_damaged_is_skipped(tmp_path, episodes):
    bag, mcap = _recorded(tmp_path, episodes)
    offset, _ = chunk_offsets(mcap)[1]
    data = bytearray(mcap.read_bytes())
    # past the record header (9) and the chunk's times, size and CRC (28): the compression name's length
    data[offset + 9 + 28] = 0xFF
    mcap.write_bytes(bytes(data))
    report, _ = check(tmp_path, bag, "corrupt", 1, [episodes[0], *episodes[2:]])
    assert f"at byte {offset}" in report.problems.items[0].text


def test_a_sqlite3_bag_with_undecodable_text_is_reported_corrupt(tmp_path, episodes):
    bag = write_bag(tmp_path / "bag", episodes[:2], storage="sqlite3")
    db = storage_file(bag)
    data = bytearray(db.read_bytes())
    # a byte of the schema's CREATE TABLE statement: SQLite's own error message is then not UTF-8
    data[data.index(b"CREATE TABLE topics") + 3] = 0xFF
    db.write_bytes(bytes(data))
    with pytest.raises(NothingIngestedError, match="corrupt"):
        ingest([bag], tmp_path / "ds", progress=False)
    (problem,) = bag_info(bag)["problem_list"]  # `rlcg data info` says so too, rather than crashing
    assert "[corrupt]" in problem and "cannot open the sqlite3 database" in problem


def test_a_sqlite3_bag_in_a_directory_named_with_uri_characters(tmp_path, episodes):
    bag = write_bag(tmp_path / "bag", episodes[:2], storage="sqlite3").rename(tmp_path / "run#1%41")
    report = ingest([bag], tmp_path / "ds", progress=False)
    assert report.episodes == 2 and not report.problems.items
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "run#1%41"]  # nothing created beside it


def test_split_files_without_metadata_are_read_in_their_numbered_order(tmp_path):
    eps = real_episodes(11, base_seed=40)
    rec = tmp_path / "rec"
    rec.mkdir()
    for i, ep in enumerate(eps):  # one file per episode, as a recording split by size and then killed
        part = write_bag(tmp_path / f"part{i}", [ep], start_ns=1_700_000_000_000_000_000 + i * 10**9)
        storage_file(part).rename(rec / f"rec_{i}.mcap")
    report = ingest([rec], tmp_path / "ds", progress=False)
    assert report.episodes == 11 and not report.problems.items
    assert [e["episode_id"] for e in TransitionDataset.open(tmp_path / "ds").episodes] == ids(eps)


def test_an_image_of_width_zero_rejects_its_episode(tmp_path, episodes):
    def empty(o):
        return dataclasses.replace(o.msg, width=0, step=0, data=np.zeros(0, np.uint8))

    def emptied(messages):  # the first episode's images: their size would become the dataset's
        return replace_topic(replace_topic(messages, topics.IMAGE, empty), topics.NEXT_IMAGE, empty)

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(0, emptied))
    report = ingest([bag], tmp_path / "ds", progress=False)
    assert report.episodes == N - 1 and report.rejected_episodes == 1
    assert TransitionDataset.open(tmp_path / "ds").image_size == (64, 64)


def test_an_action_beyond_float32_rejects_its_episode(tmp_path, episodes):
    def huge(o):  # the outcome's action and the grasp pose agree, so only the range can catch it
        o.msg.pose.position.x = 1e39
        return o.msg

    def huge_action(o):
        return dataclasses.replace(o.msg, action=np.array([1e39, *o.msg.action[1:]]))

    def both(messages):
        return replace_topic(replace_topic(messages, topics.GRASP_POSE, huge), topics.OUTCOME, huge_action)

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(2, both))
    report, ds = check(tmp_path, bag, "nan_value", 1, [*episodes[:2], episodes[3]], ids(episodes)[2])
    assert np.isfinite(np.asarray(ds.actions)).all()


def test_a_failed_ingest_leaves_the_output_as_it_was(tmp_path, episodes, monkeypatch):
    from rlcg.data import store

    bag = write_bag(tmp_path / "bag", episodes)
    calls = []

    def fail_on_the_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_append(self, *args)

    real_append = store.ShardWriter.append
    monkeypatch.setattr(store.ShardWriter, "append", fail_on_the_third)
    monkeypatch.setattr(store.ShardWriter, "FLUSH_BYTES", 1)  # write as it goes, as a large bag would
    with pytest.raises(OSError, match="No space"):
        ingest([bag], tmp_path / "new", progress=False, shard_bytes=1)  # a shard per episode
    assert not (tmp_path / "new").exists()  # created by the failed run, so removed with it
    ingest([write_bag(tmp_path / "first", episodes[:1])], tmp_path / "ds", progress=False)
    before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        ingest([bag], tmp_path / "ds", append=True, progress=False, shard_bytes=1)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == before  # no new shard, no partial one
    assert len(TransitionDataset.open(tmp_path / "ds")) == 1
    monkeypatch.undo()
    assert ingest([bag], tmp_path / "new", progress=False).episodes == N  # the same --out works again


def test_bag_directories_beside_a_loose_storage_file_are_found(tmp_path, episodes):
    root = tmp_path / "recordings"
    write_bag(root / "episodes_0000", episodes[:1])
    write_bag(root / "episodes_0001", episodes[1:2])
    storage_file(write_bag(tmp_path / "loose", episodes[2:3])).rename(root / "extra.mcap")
    report = ingest([root], tmp_path / "ds", progress=False)
    assert report.bags == 3 and report.episodes == 3 and not report.problems.items


def test_bags_without_storage_files_are_unreadable_not_duplicates(tmp_path, episodes):
    good = write_bag(tmp_path / "all" / "good", episodes[:2])
    for name in ("a", "b"):  # metadata.yaml only: the recording's files were not copied
        (tmp_path / "all" / name).mkdir()
        (tmp_path / "all" / name / "metadata.yaml").write_bytes((good / "metadata.yaml").read_bytes())
    report = ingest([tmp_path / "all"], tmp_path / "ds", progress=False)
    assert report.episodes == 2 and report.problems.counts == {"unreadable": 2}
    assert sorted(Path(p.file).parent.name for p in report.problems.items) == ["a", "b"]
    assert [s["bag"] for s in read_index(tmp_path / "ds")["sources"]] == [str(good)]


# ----------------------------------------------------------------------------- the other rejection rules
def test_a_grasp_pose_in_another_frame_rejects_its_episode(tmp_path, episodes):
    def camera_frame(o):  # values unchanged: only the frame says these are not base-frame coordinates
        o.msg.header.frame_id = topics.CAMERA_FRAME
        return o.msg

    bag = write_bag(
        tmp_path / "bag", episodes, edit_episode(1, lambda m: replace_topic(m, topics.GRASP_POSE, camera_frame))
    )
    report, _ = check(tmp_path, bag, "wrong_frame", 1, [episodes[0], *episodes[2:]], ids(episodes)[1])
    assert report.rejected_episodes == 1 and len(report.problems.items) == 1
    assert repr(topics.CAMERA_FRAME) in report.problems.items[0].text


@pytest.mark.parametrize("field", ["x", "yaw", "z_offset"])
def test_a_grasp_pose_that_disagrees_with_the_outcome_s_action_rejects_its_episode(tmp_path, episodes, field):
    def moved(o):
        p = o.msg.pose
        if field == "x":
            p.position.x += 0.01
        elif field == "z_offset":
            p.position.z += 0.01
        else:  # turn the grasp by 0.1 rad more about z
            yaw = 2 * math.atan2(p.orientation.z, p.orientation.w) + 0.1
            p.orientation.z, p.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        return o.msg

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(2, lambda m: replace_topic(m, topics.GRASP_POSE, moved)))
    report, _ = check(tmp_path, bag, "inconsistent", 1, [*episodes[:2], episodes[3]], ids(episodes)[2])
    assert report.rejected_episodes == 1 and len(report.problems.items) == 1
    assert "differs from the outcome's action" in report.problems.items[0].text


def test_an_outcome_of_another_episode_rejects_the_episode(tmp_path, episodes):
    def foreign(o):
        return dataclasses.replace(o.msg, episode_id="someone-else")

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(0, lambda m: replace_topic(m, topics.OUTCOME, foreign)))
    report, _ = check(tmp_path, bag, "inconsistent", 1, episodes[1:], ids(episodes)[0])
    assert "'someone-else'" in report.problems.items[0].text


def test_an_outcome_with_the_wrong_step_number_rejects_its_episode(tmp_path, episodes):
    def second_step(o):  # a one-step episode whose only outcome claims to close step 1
        return dataclasses.replace(o.msg, step=1)

    bag = write_bag(
        tmp_path / "bag", episodes, edit_episode(3, lambda m: replace_topic(m, topics.OUTCOME, second_step))
    )
    report, _ = check(tmp_path, bag, "step_order", 1, episodes[:3], ids(episodes)[3])
    assert report.rejected_episodes == 1 and len(report.problems.items) == 1
    assert "outcome of step 1 where step 0 was expected" in report.problems.items[0].text


@pytest.mark.parametrize("topic", [topics.IMAGE, topics.GRASP_POSE, topics.NEXT_IMAGE])
def test_a_second_message_of_a_step_rejects_its_episode(tmp_path, episodes, topic):
    def doubled(messages):  # a copy of the message, logged between it and the step's next message
        k = next(i for i, (o, _) in enumerate(messages) if o.topic == topic)
        (o, t), (_, t_next) = messages[k], messages[k + 1]
        return [*messages[: k + 1], (o, (t + t_next) // 2), *messages[k + 1 :]]

    bag = write_bag(tmp_path / "bag", episodes, edit_episode(1, doubled))
    report, _ = check(tmp_path, bag, "extra_message", 1, [episodes[0], *episodes[2:]], ids(episodes)[1])
    assert report.rejected_episodes == 1 and len(report.problems.items) == 1
    assert f"has 2 {topic} messages" in report.problems.items[0].text


# ----------------------------------------------------------------------------- copies of one recording
def test_an_intact_copy_makes_up_what_a_damaged_copy_of_the_same_bag_lost(tmp_path):
    """Two copies of one bag, one with a pixel flipped in the middle: both have the same fingerprint
    (names, sizes, first and last 64 KiB). Ingested damaged first, the intact copy is read too, and
    gives the lost episode and nothing twice; a third copy is then skipped unread."""
    import shutil

    from rlcg.data.ingest import bag_fingerprint

    eps = real_episodes(8)
    bag, mcap = _recorded(tmp_path / "intact", eps)
    damaged = tmp_path / "damaged" / bag.name
    shutil.copytree(bag, damaged)
    data = bytearray(mcap.read_bytes())
    pixels = data.index(eps[3].steps[0].image[32].tobytes())
    assert 1 << 16 < pixels < len(data) - (1 << 16)  # outside what the fingerprint reads
    data[pixels + 100] ^= 0x01
    storage_file(damaged).write_bytes(bytes(data))
    assert bag_fingerprint(damaged) == bag_fingerprint(bag)

    out = tmp_path / "ds"
    first = ingest([damaged], out, progress=False)
    assert first.episodes == 7 and first.problems.counts == {"corrupt": 1}
    second = ingest([bag], out, append=True, progress=False)
    assert (second.episodes, second.duplicate_episodes, second.skipped_bags) == (1, 7, 0)
    assert second.problems.counts == {"already_ingested": 1}  # one line for the copy, not one per episode
    assert "1 added, 7 in the dataset already" in second.problems.items[0].text
    ds = TransitionDataset.open(out)
    order = [*eps[:3], *eps[4:], eps[3]]
    assert [e["episode_id"] for e in ds.episodes] == ids(order)
    for name, value in transitions_of(order).items():
        assert np.array_equal(np.asarray(getattr(ds, name)), value), name
    ds.close()

    shutil.copytree(bag, tmp_path / "third" / bag.name)
    third = ingest([tmp_path / "third"], out, append=True, progress=False)
    assert (third.episodes, third.skipped_bags) == (0, 1) and third.problems.counts == {"already_ingested": 1}


def test_a_converted_copy_adds_nothing_and_a_second_recording_is_kept(tmp_path, episodes):
    """The same recording in another storage format (as `ros2 bag convert` makes it) has another
    fingerprint but the same episodes: they are skipped one by one. The same episodes recorded again,
    at other log times, are another recording and are kept."""
    start = 1_700_000_000_000_000_000
    mcap_bag = write_bag(tmp_path / "a", episodes, start_ns=start)
    db3_bag = write_bag(tmp_path / "b", episodes, storage="sqlite3", start_ns=start)
    again = write_bag(tmp_path / "c", episodes, start_ns=start + 10**12)

    report = ingest([mcap_bag, db3_bag], tmp_path / "ds", progress=False)
    assert (report.episodes, report.duplicate_episodes, report.bags, report.skipped_bags) == (N, N, 1, 1)
    assert report.problems.counts == {"duplicate_episode": N}
    assert all(str(mcap_bag) in p.text and p.file == str(db3_bag) for p in report.problems.items)
    index = read_index(tmp_path / "ds")
    assert [s["bag"] for s in index["sources"]] == [str(mcap_bag)]

    report = ingest([again], tmp_path / "ds", append=True, progress=False)
    assert (report.episodes, report.duplicate_episodes) == (N, 0)
    ds = TransitionDataset.open(tmp_path / "ds")
    assert [e["episode_id"] for e in ds.episodes] == ids(episodes) * 2
    ds.close()


# ----------------------------------------------------------------------------- random damage
def _damaged_copies(bag, trials: int, seed: int):
    """``trials`` copies of ``bag``, each with random damage to its storage file: a few flipped bits,
    a run of zeroed bytes, or a cut."""
    import shutil

    rng = np.random.default_rng(seed)
    original = storage_file(bag).read_bytes()
    for t in range(trials):
        data = bytearray(original)
        kind = ("flip", "zero", "cut")[t % 3]
        if kind == "flip":
            for _ in range(rng.integers(1, 5)):
                data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        elif kind == "zero":
            at, n = int(rng.integers(len(data))), int(rng.integers(1, 64))
            data[at : at + n] = bytes(len(data[at : at + n]))
        else:
            data = data[: rng.integers(len(data))]
        copy = bag.parent / f"damaged-{t}" / bag.name
        shutil.copytree(bag, copy)
        storage_file(copy).write_bytes(bytes(data))
        yield kind, copy


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_random_damage_gives_a_clear_error_or_intact_episodes(tmp_path, episodes, storage):
    """Whatever the damage, ingest either fails with rlcg's own error or keeps whole episodes. In MCAP
    (chunk CRCs) every kept episode is bit for bit the recorded one. sqlite3 keeps no checksum, so a
    damaged pixel there goes unnoticed (data-format.md says so); only the outcome kinds are checked."""
    from rlcg.errors import RlcgError

    with EpisodeRecorder(tmp_path / "rec", storage=storage) as rec:
        for ep in episodes[:3]:
            rec.write(ep)
    want = {ep.meta.episode_id: transitions_of([ep]) for ep in episodes[:3]}
    failed = kept_all = altered = 0
    for k, (kind, bag) in enumerate(_damaged_copies(rec.bags[0], 90 if storage == "mcap" else 45, seed=11)):
        try:
            ingest([bag], tmp_path / f"ds-{k}", progress=False)
        except RlcgError:
            failed += 1
            continue
        ds = TransitionDataset.open(tmp_path / f"ds-{k}")
        got = [e["episode_id"] for e in ds.episodes]
        assert len(set(got)) == len(got) and set(got) <= set(want), (kind, got)
        kept_all += len(got) == 3
        for e in ds.episodes:
            rows = np.arange(e["first"], e["first"] + e["steps"])
            same = all(np.array_equal(np.asarray(getattr(ds, n))[rows], v) for n, v in want[e["episode_id"]].items())
            assert same or storage == "sqlite3", (kind, k, e["episode_id"])
            altered += not same
        ds.close()
    assert failed and kept_all  # the damage reached both the data and what no reader needs
    assert (altered > 0) == (storage == "sqlite3")  # no checksum in sqlite3: data-format.md says so


def test_ctrl_c_during_ingest_leaves_the_output_as_it_was_and_says_so(tmp_path, episodes, monkeypatch, capsys):
    import signal

    from rlcg.cli import main
    from rlcg.data import store

    bag = write_bag(tmp_path / "bag", episodes)
    ingest([write_bag(tmp_path / "first", episodes[:1])], tmp_path / "ds", progress=False)
    before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    calls = []

    def ctrl_c_on_the_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_append(self, *args)

    real_append = store.ShardWriter.append
    monkeypatch.setattr(store.ShardWriter, "append", ctrl_c_on_the_third)
    assert main(["data", "ingest", str(bag), "--out", str(tmp_path / "ds"), "--append", "--no-progress"]) == 130
    assert capsys.readouterr().err == f"interrupted: {tmp_path / 'ds'} is as it was\n"
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == before
    calls.clear()
    assert main(["data", "ingest", str(bag), "--out", str(tmp_path / "new"), "--no-progress"]) == 130
    assert capsys.readouterr().err == f"interrupted: nothing was written ({tmp_path / 'new'})\n"
    assert not (tmp_path / "new").exists()


def test_ctrl_c_during_the_commit_finishes_it_and_says_the_dataset_holds_the_episodes(
    tmp_path, episodes, monkeypatch, capsys
):
    import signal

    from rlcg.cli import main
    from rlcg.data import ingest as ingest_module

    real_write_index = ingest_module.write_index

    def ctrl_c_while_writing_the_index(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return real_write_index(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "write_index", ctrl_c_while_writing_the_index)
    bag = write_bag(tmp_path / "bag", episodes)
    assert main(["data", "ingest", str(bag), "--out", str(tmp_path / "ds"), "--no-progress"]) == 130
    assert "holds the new episodes" in capsys.readouterr().err
    assert len(TransitionDataset.open(tmp_path / "ds").episodes) == N
