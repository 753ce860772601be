"""Our bags read by independent implementations: the `mcap` + `mcap-ros2-support` packages (decoding
with the message definitions stored in the file), and rosbags' AnyReader (types from the bag)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from data_helpers import real_episodes, storage_file

from rlcg.data import topics
from rlcg.data.recorder import EpisodeRecorder


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    eps = real_episodes(3, attempts=2)
    out = tmp_path_factory.mktemp("second") / "bags"
    with EpisodeRecorder(out) as rec:
        for ep in eps:
            rec.write(ep)
    return eps, rec.bags[0]


def test_mcap_library_decodes_every_message(recorded):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    eps, bag = recorded
    with storage_file(bag).open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count > 0  # a complete, indexed file
        decoded = list(reader.iter_decoded_messages())
    counts = Counter(ch.topic for _, ch, _, _ in decoded)
    attempts = sum(len(ep.steps) for ep in eps)
    assert counts == {
        topics.EPISODE: 3, topics.TF: 3, topics.CAMERA_INFO: 3,
        topics.IMAGE: attempts, topics.NEXT_IMAGE: attempts, topics.GRASP_POSE: attempts, topics.OUTCOME: attempts,
    }  # fmt: skip
    assert {s.name for s, _, _, _ in decoded} == set(topics.TOPIC_TYPES.values())

    steps = [s for ep in eps for s in ep.steps]
    images = [m for _, ch, _, m in decoded if ch.topic == topics.IMAGE]
    outcomes = [m for _, ch, _, m in decoded if ch.topic == topics.OUTCOME]
    poses = [m for _, ch, _, m in decoded if ch.topic == topics.GRASP_POSE]
    infos = [m for _, ch, _, m in decoded if ch.topic == topics.EPISODE]
    for step, img, out, pose in zip(steps, images, outcomes, poses, strict=True):
        assert img.encoding == "rgb8" and (img.height, img.width) == step.image.shape[:2]
        assert np.array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(step.image.shape), step.image)
        assert list(out.action) == list(step.action) and out.reward == step.reward and out.done == step.done
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in (out, img, pose)}
        assert len(stamps) == 1  # one stamp ties the step together
        assert pose.header.frame_id == topics.BASE_FRAME
        assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == (
            step.action[0], step.action[1], step.action[3]
        )  # fmt: skip
    assert [i.episode_id for i in infos] == [ep.meta.episode_id for ep in eps]
    assert len(infos[0].objects) == len(eps[0].meta.objects)


def test_rosbags_anyreader_with_the_bags_own_definitions(recorded):
    from rosbags.highlevel import AnyReader

    eps, bag = recorded
    with AnyReader([bag]) as reader:  # builds its types from the definitions stored in the bag
        outcomes = [
            reader.deserialize(raw, conn.msgtype) for conn, _, raw in reader.messages() if conn.topic == topics.OUTCOME
        ]
    assert [o.episode_id for o in outcomes] == [ep.meta.episode_id for ep in eps for _ in ep.steps]
    assert [o.step for o in outcomes] == [k for ep in eps for k in range(len(ep.steps))]
