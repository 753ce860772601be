"""`rlcg data info`, `rlcg data ingest` and `rlcg bench ingest` on the command line."""

from __future__ import annotations

import json
import shutil

import pytest
from data_helpers import real_episodes, storage_file, write_bag

from rlcg.cli import main
from rlcg.data import topics


@pytest.fixture(scope="module")
def bag_dir(tmp_path_factory):
    eps = real_episodes(3)
    root = tmp_path_factory.mktemp("cli")
    # The second episode lost its outcome: a warning, and two good episodes.
    drop = lambda i, m: [(o, t) for o, t in m if not (i == 1 and o.topic == topics.OUTCOME)]  # noqa: E731
    write_bag(root / "bags" / "one", eps, drop)
    return root, eps


def test_info_on_a_directory_without_bags_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", str(tmp_path / "empty")]) == 2
    assert f"no rosbag2 bags found in {tmp_path / 'empty'}" in capsys.readouterr().err


def test_info_text_for_bags_and_dataset(bag_dir, capsys):
    root, eps = bag_dir
    assert main(["data", "info", str(root / "bags")]) == 0
    out = capsys.readouterr().out
    assert "1 bag(s)" in out and "episodes:     2 complete (2 grasp attempts), 1 skipped" in out
    assert "domains:      sim 2" in out and "image sizes:  64x64 2" in out and "success rate:" in out
    assert f"{topics.IMAGE}" in out and "sensor_msgs/msg/Image" in out
    assert "missing_outcome" in out and eps[1].meta.episode_id in out

    assert main(["data", "ingest", str(root / "bags"), "--out", str(root / "ds"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "ingested 2 episodes (2 transitions) from 1 bag(s)" in captured.out
    assert "skipped 1 episode(s); warnings: 1 missing_outcome" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "one.mcap" in warning[0] and eps[1].meta.episode_id in warning[0]

    assert main(["data", "info", str(root / "ds")]) == 0
    out = capsys.readouterr().out
    assert "rlcg dataset" in out and "episodes:     2 (2 transitions)" in out and "sources:      1 bag(s)" in out
    assert main(["data", "info", str(root / "ds"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "dataset" and info["transitions"] == 2 and info["image_sizes"] == {"64x64": 2}


def test_ingest_errors_exit_2_without_traceback(bag_dir, tmp_path, capsys):
    root, _ = bag_dir
    out = tmp_path / "ds"
    assert main(["data", "ingest", str(root / "bags"), "--out", str(out), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and report["problems"] == {"missing_outcome": 1} and len(report["warnings"]) == 1
    cases = [
        (["data", "ingest", str(root / "bags"), "--out", str(out)], "--append"),
        (["data", "ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "x")], "no such file"),
        (["data", "ingest", str(tmp_path), "--out", str(tmp_path / "y")], "no rosbag2 bags"),
        (["data", "info", str(tmp_path / "missing")], "no such file"),
        # an OSError other than a missing file: the output's parent is a file
        (["data", "ingest", str(root / "bags"), "--out", str(out / "dataset.json" / "x")], "Not a directory"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["data", "ingest", str(root), "--out", str(tmp_path / "z"), "--image-size", "0x5"])


def test_bench_ingest_reports_the_ratio(capsys):
    argv = ["bench", "ingest", "--json", "--episodes", "2", "--copies", "3", "--repeats", "1", "--image-size", "32"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ingest_mb_per_s", "raw_read_mb_per_s", "ratio", "transitions_per_s"):
        assert report[key] > 0, key
    assert report["ratio"] == pytest.approx(report["ingest_mb_per_s"] / report["raw_read_mb_per_s"])
    assert report["transitions"] == 6 and report["messages"] == 6 * 7


def test_damaged_datasets_exit_2_with_one_line(bag_dir, tmp_path, capsys):
    root, _ = bag_dir
    out = tmp_path / "ds"
    assert main(["data", "ingest", str(root / "bags"), "--out", str(out), "--no-progress"]) == 0
    (out / "shard_00000" / "images.npy").write_bytes(b"")
    capsys.readouterr()
    cases = [
        (["data", "info", str(out)], "images.npy is empty (0 bytes)"),
        (["data", "ingest", str(root / "bags"), "--out", str(out), "--append"], "rebuild it from its bags"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    index = json.loads((out / "dataset.json").read_text())
    index["image_size"] = "abc"
    (out / "dataset.json").write_text(json.dumps(index))
    assert main(["data", "info", str(out)]) == 2
    assert "dataset.json is damaged: image_size must be" in capsys.readouterr().err


def test_info_on_bags_that_cannot_be_read_exits_2_after_its_report(bag_dir, tmp_path, capsys):
    root, _ = bag_dir
    whole = storage_file(root / "bags" / "one").read_bytes()
    for name, data in [("empty", b""), ("garbage", bytes(range(256)) * 8), ("cut", whole[:400])]:
        path = tmp_path / f"{name}.mcap"
        path.write_bytes(data)
        assert main(["data", "info", str(path)]) == 2, name
        captured = capsys.readouterr()
        assert "0 complete" in captured.out and "problems:     none" not in captured.out
        assert f"nothing could be read from {path}" in captured.err and "Traceback" not in captured.err
        assert main(["data", "info", str(path), "--json"]) == 2
        assert json.loads(capsys.readouterr().out)["episodes"] == 0


@pytest.mark.parametrize("text", ["", ":::: {{ not yaml", "hello"])
def test_info_reports_a_damaged_metadata_yaml_and_reads_the_storage_files(bag_dir, tmp_path, capsys, text):
    root, _ = bag_dir
    bag = tmp_path / "bag"
    shutil.copytree(root / "bags" / "one", bag)
    (bag / "metadata.yaml").write_text(text)
    assert main(["data", "info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "episodes:     2 complete" in out and "corrupt 1" in out
    assert f"{bag / 'metadata.yaml'}: metadata.yaml " in out and "read without it" in out
