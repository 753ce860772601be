"""The policy-side commands as a user runs them: eval (determinism per seed), viz q, bench policy
and bench train (their documented JSON keys)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from rlcg.cli import main
from rlcg.models.qnet import QNetConfig, QNetwork
from rlcg.rl.cem import CEMConfig
from rlcg.rl.policy import save_policy


@pytest.fixture(scope="module")
def untrained_policy(tmp_path_factory, sim_config):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("policy") / "ckpt"
    save_policy(path, QNetwork(QNetConfig.for_world(sim_config)), CEMConfig())
    return str(path)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_eval_is_deterministic_per_seed_for_any_worker_count(untrained_policy, capsys):
    runs = []
    for workers, seed in (("1", "7"), ("2", "7"), ("1", "8")):
        args = ["eval", "--policy", untrained_policy, "--episodes", "4", "--bins", "multi", "--seed", seed]
        assert main([*args, "--workers", workers, "--json", "--no-progress"]) == 0
        runs.append(_json(capsys))
    assert runs[0] == runs[1]
    assert runs[0]["objects"] == "test" and runs[0]["episodes"] == 4
    assert runs[0]["seed"] == 7 and runs[2]["seed"] == 8


def test_eval_cem_replaces_the_checkpoint_s_own_and_is_refused_where_it_cannot_apply(
    untrained_policy, tmp_path, capsys
):
    from rlcg.rollout import make_policy

    assert make_policy(untrained_policy).cem == CEMConfig()
    assert make_policy(untrained_policy, cem=(3, 32, 4)).cem == CEMConfig(3, 32, 4)
    # the same weights saved with that CEM act exactly as the option makes the first checkpoint act
    same_weights = tmp_path / "cem-3-32-4"
    save_policy(same_weights, make_policy(untrained_policy).qnet, CEMConfig(3, 32, 4))
    args = ["eval", "--episodes", "4", "--seed", "5", "--json", "--no-progress"]
    assert main([*args, "--policy", untrained_policy, "--cem", "3", "32", "4"]) == 0
    with_option = _json(capsys)
    assert with_option.pop("cem") == {"iterations": 3, "population": 32, "elites": 4}
    assert main([*args, "--policy", str(same_weights)]) == 0
    saved = _json(capsys)
    assert "cem" not in saved
    assert {k: v for k, v in with_option.items() if k != "policy"} == {k: v for k, v in saved.items() if k != "policy"}

    for bad, message in (
        (["--policy", "scripted", "--cem", "2", "64", "6"], "learned policies"),
        (["--policy", untrained_policy, "--cem", "2", "8", "9"], "elites must be within 1..population"),
    ):
        assert main(["eval", "--episodes", "1", *bad]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--policy", untrained_policy, "--cem", "2", "0", "1"])


def test_viz_q_writes_a_heatmap(untrained_policy, tmp_path, capsys):
    out = tmp_path / "q.png"
    assert main(["viz", "q", "--policy", untrained_policy, "--seed", "3", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 64


def test_bench_policy_reports_the_documented_keys(untrained_policy, capsys):
    assert main(["bench", "policy", "--policy", untrained_policy, "--decisions", "5", "--json"]) == 0
    report = _json(capsys)
    assert report["threads"] == 1 and report["cem"] == {"iterations": 2, "population": 64, "elites": 6}
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert report["speedup_vs_full_forward"] > 1  # the image is encoded once per decision
    assert (
        main(["bench", "policy", "--policy", untrained_policy, "--decisions", "5", "--cem", "1", "16", "2", "--json"])
        == 0
    )
    assert _json(capsys)["cem"] == {"iterations": 1, "population": 16, "elites": 2}


def test_bench_train_reports_every_method(capsys):
    argv = ["bench", "train", "--steps", "1", "--threads", "1", "--ablation", "--repeats", "1", "--json"]
    assert main(argv) == 0
    report = _json(capsys)
    assert (report["batch_size"], report["q_batch_size"]) == (8, 32)  # sim-only's Q trains on the GAN methods' 32
    rates = report["devices"]["cpu"]
    for method in ("sim-only", "gan", "cyclegan", "rl-cyclegan"):
        assert rates[f"{method}_steps_per_s"] > 0, method
    hot = rates["hot_path"]  # the hot-path ablation, fused Adam on CPU included
    for variant in ("neither", "channels_last", "fused_adam", "both"):
        assert hot[f"{variant}_steps_per_s"] > 0, variant
    for variant in ("channels_last", "fused_adam", "both"):
        assert hot[f"{variant}_speedup"] == pytest.approx(hot[f"{variant}_steps_per_s"] / hot["neither_steps_per_s"])


def test_train_q_resumes_after_sigkill(small_bag, tmp_path):
    """A train-q process killed mid-run (SIGKILL: no clean-up) continues with --resume from its
    last checkpoint and reaches the requested step."""
    import signal
    import subprocess
    import time

    ckpt = tmp_path / "q"
    cmd = _rlcg("train-q", "--data", small_bag, "--out", str(ckpt), "--batch-size", "8")
    cmd += ["--checkpoint-every", "5", "--threads", "1", "--no-progress"]
    # a killed process cannot remove its scratch files: keep them inside tmp_path
    env = os.environ | {"TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([*cmd, "--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    while not (ckpt / "config.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (ckpt / "config.json").exists(), proc.stderr.read().decode()[-2000:]

    done = subprocess.run([*cmd, "--steps", "60", "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    start = int(done.stdout.split("from step ")[1].split()[0])
    assert 0 < start < 60 and start % 5 == 0
    assert "saved" in done.stdout and "(step 60," in done.stdout


def _rlcg(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "rlcg.cli", *args]


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    bag = tmp_path_factory.mktemp("bags") / "sim"
    assert main(["collect", "--policy", "scripted", "--episodes", "6", "--out", str(bag), "--no-progress"]) == 0
    return str(bag)


def test_rl_cyclegan_train_resumes_after_sigkill(small_bag, tmp_path):
    """`rlcg train` killed (SIGKILL) after its first checkpoint continues with --resume."""
    import signal
    import subprocess
    import time

    from rlcg.rl.checkpoint import load_checkpoint

    run = tmp_path / "run"
    cmd = _rlcg("train", "--method", "rl-cyclegan", "--sim-data", small_bag, "--real-data", small_bag)
    cmd += ["--out", str(run), "--checkpoint-every", "1", "--threads", "1", "--no-progress"]
    env = os.environ | {"TMPDIR": str(tmp_path)}  # a killed process cannot remove its scratch files
    proc = subprocess.Popen([*cmd, "--steps", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    while not (run / "checkpoint" / "config.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, _, state = load_checkpoint(run / "checkpoint", with_train_state=True)
    killed_at = int(state["step"])
    assert 1 <= killed_at < 4

    done = subprocess.run(
        [*cmd, "--steps", str(killed_at + 2), "--resume"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, _, state = load_checkpoint(run / "checkpoint", with_train_state=True)
    assert int(state["step"]) == killed_at + 2
    assert (run / "policy" / "config.json").is_file()


@pytest.mark.slow
def test_train_runs_unchanged_under_torchrun(small_bag, tmp_path):
    """`torchrun --nproc_per_node 2 -m rlcg.cli train ...`: DistributedDataParallel on gloo."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    run = tmp_path / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port]
    cmd += ["-m", "rlcg.cli", "train", "--method", "gan"]
    cmd += ["--sim-data", small_bag, "--real-data", small_bag, "--out", str(run), "--steps", "2", "--threads", "1"]
    done = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "policy" / "config.json").is_file()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lr", "nan", "--lr: must be a finite number above 0"),
        ("--lr", "-1", "--lr: must be a finite number above 0"),
        ("--gamma", "1.5", "--gamma: must be within [0, 1]"),
        ("--channels", "0", "--channels: must be within 1..1024"),
        ("--channels", "100000", "--channels: must be within 1..1024"),
        ("--batch-size", "100000", "--batch-size: must be within 1..65536"),
        ("--seed", "99999999999999999999999", "--seed: must be at least 0 (and below 2^63)"),
        ("--data", "ds:inf", "weight must be a finite number above 0"),
        ("--threads", "-1", "--threads: must be at least 1"),
        ("--eval-episodes", "-5", "--eval-episodes: must be at least 0"),
        ("--eval-every", "-1", "--eval-every: must be at least 0"),
        ("--seed", "-1", "--seed: must be at least 0"),
    ],
)
def test_train_q_refuses_bad_numbers_before_reading_any_data(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit):
        main(["train-q", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "q"), option, value])
    assert message in capsys.readouterr().err and not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--method", "gan", "--sim-data", "none", "--real-data", "none", "--out", "out", "--seed", "-1"],
        ["viz", "q", "--seed", "-1", "--out", "q.png"],
        ["viz", "q", "--out", "q.txt"],
        ["bench", "transfer", "--seed", "-1", "--out", "out"],
    ],
    ids=["train seed", "viz seed", "viz out", "bench transfer seed"],
)
def test_seeds_and_outputs_are_checked_before_any_work(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and ("--seed: must be at least 0" in err or "ends in .png" in err), err
    assert list(tmp_path.iterdir()) == []


def test_train_q_resume_refuses_fewer_steps_than_trained(small_bag, tmp_path, capsys):
    argv = ["train-q", "--data", small_bag, "--out", str(tmp_path / "q"), "--batch-size", "8", "--no-progress"]
    assert main([*argv, "--steps", "3"]) == 0
    before = (tmp_path / "q" / "config.json").read_bytes()
    # the checkpoint records the command as given, also when main() is called with its own arguments
    recorded = json.loads(before)["config"]["training"]["provenance"]["command"]
    assert recorded == "rlcg " + " ".join([*argv, "--steps", "3"])
    capsys.readouterr()
    assert main([*argv, "--steps", "2", "--resume"]) == 2
    assert "the run has trained 3 steps; --steps cannot be fewer" in capsys.readouterr().err
    assert (tmp_path / "q" / "config.json").read_bytes() == before


def test_train_q_refuses_a_cem_that_cannot_run(small_bag, tmp_path, capsys):
    argv = ["train-q", "--data", small_bag, "--out", str(tmp_path / "q"), "--steps", "1", "--no-progress"]
    assert main([*argv, "--cem", "2", "64", "100"]) == 2
    assert "--cem: elites must be within 1..population (64), got 100" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["viz", "q", "--out", ".png"], "ends in .png"),
        (["render", "--out", ".png"], "ends in .png"),
        (["viz", "q", "--scale", "100000", "--out", "q.png"], "--scale: must be within 1..32"),
        (["sim", "--workers", "100000"], "--workers: must be within 1..256"),
        (["sim", "--cem", "999999", "64", "6"], "CEM needs 1..100 iterations"),
        (["bench", "train", "--repeats", "5"], "--repeats sets the rounds of --ablation"),
        (["collect", "--out", "", "--episodes", "1"], "bag directory has no name"),
        (
            ["train", "--method", "gan", "--sim-data", "s", "--real-data", "r", "--out", "o", "--q-batch-size", "4"],
            "--q-batch-size 4 is below --batch-size 8",
        ),
        (["train", "--method", "gan", "--sim-data", "s", "--real-data", "r", "--disc-layers", "10"], "within 1..5"),
    ],
    ids=["viz .png", "render .png", "viz scale", "workers", "cem", "repeats", "collect out", "q batch", "disc layers"],
)
def test_sizes_and_names_that_only_exhaust_memory_or_mean_nothing_are_refused(
    argv, message, tmp_path, monkeypatch, capsys
):
    """Each used to crash with a traceback, run out of memory, or be ignored (CLI audit)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        if main(argv) == 2:
            raise SystemExit(2)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_q_never_writes_into_a_dataset_and_bench_transfer_never_into_a_foreign_directory(
    small_bag, tmp_path, capsys
):
    from rlcg.data.ingest import ingest

    ingest([small_bag], tmp_path / "ds", progress=False)
    before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert main(["train-q", "--data", small_bag, "--out", str(tmp_path / "ds"), "--steps", "1", "--no-progress"]) == 2
    assert "holds a dataset or bags" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == before
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "report.md").write_text("# my report")
    argv = ["bench", "transfer", "--out", str(mine), "--sim-episodes", "4", "--real-episodes", "4", "--workers", "1"]
    assert main(argv) == 2
    assert "holds no benchmark run" in capsys.readouterr().err
    assert (mine / "report.md").read_text() == "# my report" and [p.name for p in mine.iterdir()] == ["report.md"]


def test_no_more_simulator_processes_than_episodes(monkeypatch):
    from rlcg import rollout

    started = []
    real_init = rollout.EpisodeRunner.__init__

    def recording_init(self, spec, workers=1):
        started.append(workers)
        real_init(self, spec, workers)

    monkeypatch.setattr(rollout.EpisodeRunner, "__init__", recording_init)
    spec = rollout.RolloutSpec(policy="random", episodes=1, image_size=64)
    assert len(list(rollout.iter_episodes(spec, workers=8))) == 1 and started == [1]
