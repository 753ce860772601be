"""The `rlcg` command line: the world commands, help texts and error reporting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from rlcg.cli import build_parser, main


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield name, sub
                for inner, subsub in _subcommands(sub):
                    yield f"{name} {inner}", subsub


def test_every_command_has_true_help(capsys):
    names = dict(_subcommands(build_parser()))
    assert {"sim", "collect", "render", "bench", "bench sim"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exit_:
            main([*name.split(), "--help"])
        assert exit_.value.code == 0
        assert "usage: rlcg" in capsys.readouterr().out


def test_python_dash_m_rlcg_is_the_rlcg_command():
    # where the script is not on PATH (a checkout on PYTHONPATH, as scripts/gpu_check.sh runs it)
    run = subprocess.run([sys.executable, "-m", "rlcg", "sim", "--policy", "nope"], capture_output=True, text=True)
    assert run.returncode == 2 and "rlcg sim: error" in run.stderr and "nope" in run.stderr


def test_sim_json_report(capsys):
    assert main(["sim", "--policy", "random", "--episodes", "4", "--bins", "multi", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 4
    assert 0.0 <= report["ci95"][0] <= report["success_rate"] <= report["ci95"][1] <= 1.0
    assert sum(b["episodes"] for b in report["per_bin"].values()) == 4


def test_render_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["render", "--domain", "pseudo-real", "--seeds", "4", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.width > 200 and img.height > 200


def test_bad_domain_is_a_clear_error(capsys):
    assert main(["sim", "--domain", "nope", "--policy", "random", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'nope'" in err and "Traceback" not in err


def test_installed_entry_point_prints_only_json(tmp_path):
    """`--json` output pipes into a JSON parser as is: nothing else reaches stdout (PyBullet's C
    code prints on connect, in this process and in the workers). And the run leaves no scratch
    files behind (textures, hulls, URDFs), not even those of its terminated worker processes."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = os.environ | {"TMPDIR": str(scratch)}
    for workers in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "rlcg.cli", "sim", "--policy", "oracle", "--episodes", "2", "--workers", workers]
            + ["--json", "--no-progress"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["episodes"] == 2
        assert list(scratch.iterdir()) == []


def test_bench_sim_reports_the_documented_keys(capsys):
    assert main(["bench", "sim", "--attempts", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("attempts_per_s_1_worker", "attempts_per_s_2_workers", "attempts_per_s_per_core"):
        assert report[key] > 0


def test_runner_waits_until_every_worker_has_started():
    """What bench sim's clock starts after: every worker's set-up done, not only the fastest's."""
    from rlcg.rollout import EpisodeRunner, RolloutSpec

    with EpisodeRunner(RolloutSpec(policy="random", image_size=64), 2) as runner:
        ready = runner.wait_ready()
    assert len(ready) == 2 and os.getpid() not in ready


def test_a_worker_that_cannot_start_is_a_clear_error_not_a_hang(tmp_path):
    """A pool replaces a worker whose set-up raised, forever; the error must reach the command."""
    import shutil

    from rlcg.paths import config_dir

    config = tmp_path / "config"
    shutil.copytree(config_dir(), config)
    world = config / "world.yaml"
    world.write_text(world.read_text().replace("settle_steps:", "settle_step:"))  # a typo'd key
    out = subprocess.run(
        [sys.executable, "-m", "rlcg.cli", "sim", "--policy", "random", "--episodes", "2", "--workers", "2"]
        + ["--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"RLCG_CONFIG_DIR": str(config)},
    )
    assert out.returncode == 2, out.stderr
    assert "a worker process could not start" in out.stderr and "settle_step" in out.stderr
    assert "Traceback" not in out.stderr.split("a worker process could not start")[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["collect", "--episodes", "1", "--out", "x", "--explore", "2"], "--explore: must be within [0, 1]"),
        (["collect", "--episodes", "1", "--out", "x", "--max-bag-mb", "0"], "--max-bag-mb: must be a finite"),
        (["sim", "--episodes", "1", "--seed", "-1"], "--seed: must be at least 0"),
        (["render", "--out", "grid.jpg"], "ends in .png"),
        (["bench", "ingest", "--image-size", "3"], "image size must be within 16..1024, got 3"),
    ],
)
def test_bad_values_are_refused_when_parsed(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_an_image_size_the_policy_cannot_take_is_a_clear_error(capsys):
    assert main(["sim", "--policy", "default", "--episodes", "1", "--image-size", "32", "--no-progress"]) == 2
    assert "--image-size 32: the policy takes 64x64 images" in capsys.readouterr().err


def test_a_rollout_in_this_process_gives_the_caller_its_threads_back():
    import torch

    from rlcg.data.episode import MemorySink
    from rlcg.rollout import RolloutSpec, rollout

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rollout(RolloutSpec(policy="random", episodes=1), MemorySink(), workers=1, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_ctrl_c_during_an_evaluation_reports_the_episodes_that_finished(monkeypatch, capsys):
    import signal

    from rlcg import rollout

    real_run_episode = rollout.run_episode
    calls = []

    def ctrl_c_in_the_third_episode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_run_episode(*args, **kwargs)

    monkeypatch.setattr(rollout, "run_episode", ctrl_c_in_the_third_episode)
    argv = ["sim", "--policy", "random", "--episodes", "10", "--no-progress"]
    assert main(argv) == 130
    out, err = capsys.readouterr()
    assert "over 2 episodes" in out
    assert err.endswith("interrupted: 2 of 10 episodes finished; the figures above are of those alone\n")
    calls.clear()
    assert main([*argv, "--json"]) == 130
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and report["interrupted"] == {"episodes_planned": 10}
    calls.clear()
    calls.extend([1, 1])  # Ctrl-C in the first episode: nothing to report
    assert main(argv) == 130
    assert capsys.readouterr().err == "interrupted: no episode finished\n"
