"""The transfer benchmark end to end (`rlcg bench transfer --preset smoke`), with a user's own
domain YAML as the hidden reality: checks that the pipeline runs and reports, not the numbers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from rlcg.cli import main
from rlcg.data.bags import BagReader, Problems
from rlcg.data.cdr import episode_info
from rlcg.eval.transfer import METHOD_ORDER
from rlcg.paths import config_dir
from rlcg.rollout import episode_seed


def test_bench_transfer_smoke_end_to_end(tmp_path, capsys):
    reality = yaml.safe_load((config_dir() / "domains" / "pseudo-real.yaml").read_text())
    reality.update(name="my-lab", description="a user's own reality, from a file")
    reality_file = tmp_path / "my-lab.yaml"
    reality_file.write_text(yaml.safe_dump(reality))
    out = tmp_path / "report"
    args = ["bench", "transfer", "--preset", "smoke", "--real-domain", str(reality_file), "--real-rl"]
    assert main([*args, "--no-progress", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert report["real_domain"] == "my-lab" and report["preset"] == "smoke"
    assert list(report["methods"]) == list(METHOD_ORDER)
    for result in report["methods"].values():
        low, high = result["ci95"]
        assert 0 <= low <= result["success_rate"] <= high <= 1
        assert result["episodes"] == report["settings"]["eval_episodes"]
        offline = result["offline"]  # Q scored on the last real chunk's outcomes, or why it could not be
        assert offline["data"].endswith("real-1")
        assert (0 <= offline["auc"] <= 1) if offline["auc"] is not None else "outcome" in offline["why_not"]
    amounts = [point["real_episodes"] for point in report["real_rl_curve"]]
    assert amounts == sorted(amounts) and amounts[-1] == report["settings"]["real_episodes"]
    for name in ("report.md", "report.json", "success.png", "translations.png", "real_rl_curve.png"):
        assert (out / name).stat().st_size > 0, name
    assert "my-lab" in (out / "report.md").read_text()
    for method in METHOD_ORDER:
        assert (out / "runs" / method / "policy" / "config.json").is_file(), method
    # the same report directory with another reality would reuse this one's data and runs: refused
    reality["sensor"]["noise_std"] = reality["sensor"].get("noise_std", 0) + 1
    reality_file.write_text(yaml.safe_dump(reality))
    before = (out / "report.json").read_bytes()
    assert main([*args, "--no-progress", "--json", "--out", str(out)]) == 2
    assert "other settings (real_domain differ)" in capsys.readouterr().err
    assert main(["bench", "transfer", "--preset", "smoke", "--seed", "1", "--out", str(out), "--no-progress"]) == 2
    assert "real_domain, seed differ" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == before


@pytest.fixture(scope="module")
def given_sim_only_bench(tmp_path_factory):
    """The paper preset's arrangement at smoke size: the bench with the shipped sim-only policy given."""
    out = tmp_path_factory.mktemp("given") / "report"
    args = ["bench", "transfer", "--preset", "smoke", "--sim-only-policy", "default", "--no-progress", "--json"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def test_bench_transfer_from_a_given_sim_only_policy(given_sim_only_bench):
    """The shipped sim-only policy is used, not trained; its own episodes join the sim data and
    every other method starts from it."""
    from rlcg.rl.policy import default_policy_path

    out = given_sim_only_bench
    report = json.loads((out / "report.json").read_text())
    assert report["sim_only_policy"] == str(default_policy_path())
    assert list(report["methods"]) == list(METHOD_ORDER)
    assert not (out / "runs" / "sim-only").exists()
    assert json.loads((out / "data" / "sim-onpolicy" / ".complete").read_text())["episodes"] == 40
    for method in METHOD_ORDER[1:]:
        training = json.loads((out / "runs" / method / "policy" / "config.json").read_text())["config"]["training"]
        assert training["init_q"] == str(default_policy_path()), method
    assert "not trained here" in (out / "report.md").read_text()


def _rounds_script(data: Path, work: Path, **env: str) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(
        ["bash", str(repo / "scripts/make_rounds_policy.sh"), str(data), str(work)],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_rounds_policy_runs_its_rounds_a_fresh_final_round_and_a_real_round_on_the_bench_s_data(
    given_sim_only_bench, tmp_path
):
    """scripts/make_rounds_policy.sh at toy size on the bench's datasets: a round's episodes are
    Q_real's own (collected through G) and join the sim data; the final run starts from the rounds
    run with a fresh Q_real; a real round's episodes are the final policy's own grasps in pseudo-real,
    and the next run learns from them by TD; a second call redoes nothing."""
    data, work = given_sim_only_bench / "data", tmp_path / "work"
    toy = {"SEED": "3", "ROUNDS": "1", "STEPS_PER_ROUND": "2", "EPISODES": "3", "FINAL": "fresh", "FINAL_STEPS": "2"}
    toy |= {"REAL_ROUNDS": "1", "REAL_EPISODES": "3", "REAL_STEPS": "2"}
    proc = _rounds_script(data, work, **toy, EVAL_EPISODES="2", MIN_GRASPS="10")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((work / "run" / "checkpoint" / "config.json").read_text())["config"]
    assert run["steps_done"] == 4 and run["train"]["weights"]["identity"] == 5
    # collection seeds 10 * (K + 2) + SEED for sim round K, 10 * (ROUNDS + J + 2) + SEED for real round J,
    # as in docs/results.md
    for name, base_seed, domain, policy in (
        ("r1", 33, "sim", f"+explore0.2+G({work / 'run'})"),
        ("r2", 43, "sim", f"+explore0.2+G({work / 'run'})"),
        ("own1", 43, "pseudo-real", f"{work / 'final' / 'policy'}+explore0.2"),
    ):
        assert json.loads((work / "data" / name / "dataset.json").read_text())["episodes"] == 3, name
        bag = next((work / "bags" / name).iterdir())
        messages = BagReader(bag, Problems()).messages()
        infos = [episode_info(cdr) for topic, _, _, cdr in messages if topic == "/rlcg/episode"]
        assert [i.seed for i in infos] == [episode_seed(base_seed, i) for i in range(3)], name
        assert {i.domain for i in infos} == {domain}, name
        assert all(i.policy_id.endswith(policy) for i in infos), (name, infos[0].policy_id)
    final = json.loads((work / "final" / "checkpoint" / "config.json").read_text())["config"]
    assert final["steps_done"] == 2 and final["fresh_q_real"] is True
    assert final["init_run"] == str((work / "run").resolve())
    assert final["train"]["q_updates_per_step"] == 4 and final["train"]["lr_schedule"] == "q-cosine"
    own = json.loads((work / "own-1" / "checkpoint" / "config.json").read_text())["config"]
    assert own["steps_done"] == 2 and own["init_run"] == str((work / "final").resolve())
    assert own["train"]["real_rl"] is True and own["train"]["real_rl_share"] == 0.25
    real_data = own["provenance"]["command"].split("--real-data ")[1].split(" --")[0].split()
    assert real_data == [*map(str, sorted(data.glob("real-*"))), str(work / "data" / "own1")]
    # the calibrations ran on the bench's 24 real grasps; a toy Q_real's fit ends on the offset's bound,
    # which the script reports and then goes on with the trained policy alone
    assert proc.stdout.count("rlcg calibrate: error: the best offset") == 2
    assert "going on with" in proc.stdout
    assert not (work / "calibrated").exists() and not (work / "own-1-calibrated").exists()
    evals = [json.loads(line) for line in (work / "eval_pseudo-real.jsonl").read_text().splitlines()]
    assert [e["policy"] for e in evals] == [str(work / "own-1" / "policy")] * 2
    assert [e.get("cem") for e in evals][1] == {"iterations": 3, "population": 256, "elites": 12}

    again = _rounds_script(data, work, **toy, EVAL_EPISODES="0", MIN_GRASPS="10")
    assert again.returncode == 0, again.stdout[-2000:]
    assert again.stdout.count("done before, skipped") == 7  # joint1, round1, joint2, round2, final, own-round1, own-1
    # another episode count would reuse rounds collected with the first one: refused
    changed = _rounds_script(data, work, **(toy | {"EPISODES": "4"}), EVAL_EPISODES="0", MIN_GRASPS="10")
    assert changed.returncode == 2 and "give another WORK_DIR" in changed.stdout + changed.stderr

    bad_env = (
        ({"FINAL": "twice"}, "FINAL must be none or fresh"),
        ({"CALIBRATE": "1"}, "CALIBRATE must be yes or no"),
        ({"REAL_ROUNDS": "two"}, "REAL_ROUNDS must be a whole number"),
    )
    for env, message in (*bad_env, ({}, "is missing")):
        bad = _rounds_script(tmp_path / "nothing", tmp_path / "bad", **env)
        assert bad.returncode == 2 and message in bad.stderr
        assert not (tmp_path / "bad").exists()


def test_bench_transfer_refuses_a_missing_sim_only_policy_before_collecting(tmp_path, capsys):
    out = tmp_path / "report"
    args = ["bench", "transfer", "--sim-only-policy", str(tmp_path / "nowhere"), "--out", str(out)]
    assert main([*args, "--no-progress"]) != 0
    assert "nowhere" in capsys.readouterr().err
    assert not (out / "data").exists()


def test_the_rounds_figure_draws_from_figures_that_docs_results_md_reports(tmp_path):
    """scripts/plot_rounds_steps.py holds the per-seed successes behind the rounds figure: each point's
    pair of seeds and its two-seed success must be ones that docs/results.md gives, and the figure must draw."""
    import importlib.util
    import re

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("plot_rounds_steps", root / "scripts" / "plot_rounds_steps.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    results = (root / "docs" / "results.md").read_text()
    for _, _, series in plot.PANELS:
        for label, *_, points in series:
            for step, per_seed in points.items():
                both, lo, hi = plot.over_both_seeds(per_seed)
                assert lo < both < hi
                assert f"{both:.1f}%" in results, (label, step, per_seed)
                # as "a% | b%", "a% [lo, hi] | b%" (the seeds' columns) or "a / b"
                a, b = (re.escape(f"{p:.1f}") for p in per_seed)
                assert re.search(rf"\b{a}%?( \[[\d., ]+\])? (\||/) {b}\b", results), (label, step, per_seed)
    assert plot.over_both_seeds((79.0, 79.3))[0] == pytest.approx(100 * 475 / 600)
    out = tmp_path / "steps.png"
    plot.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_the_target_figure_draws_from_the_successes_that_docs_results_md_reports(tmp_path):
    """scripts/plot_target_scenes.py holds the successes behind the three-scene-set tables: each
    policy's per-seed rates on each set, its rate over all sets with its interval, its gap to the sim
    policy, and the sim policy's rates must be the ones docs/results.md gives, and the figure must draw."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("plot_target_scenes", root / "scripts" / "plot_target_scenes.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    section = (root / "docs" / "results.md").read_text().split("**Three sets of evaluation scenes")[1]
    tables = [block for block in section.split("\n\n") if block.startswith("| CEM")]
    assert len(tables) == len(plot.PANELS) == 2
    for table, (_, sim, policies) in zip(tables, plot.PANELS):
        rows = table.splitlines()[2:]
        sim_row, policy_rows = rows[0], rows[1:]
        assert [f"{100 * sim[s] / plot.EPISODES:.1f}%" in sim_row for s in plot.SCENE_SETS] == [True] * 3
        lo, hi = (100 * v for v in plot.wilson_interval(sum(sim.values()), plot.EPISODES * len(sim)))
        assert f"{plot.sim_policy_pooled(sim):.1f}% [{lo:.1f}, {hi:.1f}]" in sim_row
        assert len(policy_rows) == len(policies) == len(plot.LABELS)
        for row, per_set in zip(policy_rows, policies):
            for scenes in plot.SCENE_SETS:
                seeds = " / ".join(f"{100 * k / plot.EPISODES:.1f}" for k in per_set[scenes])
                over_seeds = 100 * sum(per_set[scenes]) / (plot.EPISODES * 3)
                assert f"{seeds}: {over_seeds:.1f}%" in row, (row, scenes)
            assert "{:.1f}% [{:.1f}, {:.1f}]".format(*plot.pooled(per_set)) in row
            assert "{:.1f} [{:.1f}, {:.1f}]".format(*plot.points_under_sim(sim, per_set)) in row
    # one count by hand: the calibrated step-6,000 policies over all sets, QT-Opt's search
    assert plot.pooled(plot.PANELS[0][2][1])[0] == pytest.approx(100 * 2143 / 2700)
    out = tmp_path / "target.png"
    plot.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_a_recipe_work_directory_refuses_other_settings(tmp_path):
    """scripts/steps.sh: a re-run of a make_*_policy.sh recipe with other settings in the same
    WORK_DIR would skip steps made with the first ones, so it stops (status 2) before any step."""
    steps = Path(__file__).resolve().parents[1] / "scripts" / "steps.sh"
    work = tmp_path / "work"

    def run(settings: str) -> subprocess.CompletedProcess:
        script = f'set -euo pipefail; WORK="{work}"; source "{steps}"; recipe {settings}; step one echo ran'
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)

    first = run("SEED=0 DOMAIN=sim")
    assert first.returncode == 0 and "one: start" in first.stdout
    assert run("SEED=0 DOMAIN=sim").returncode == 0  # the same settings: the finished step is skipped
    other = run("SEED=1 DOMAIN=sim")
    assert other.returncode == 2 and "give another WORK_DIR" in (work / "log.txt").read_text() + other.stderr
    assert "one: done before, skipped" in (work / "log.txt").read_text()


def test_ctrl_c_in_a_bench_collection_or_evaluation_says_what_the_same_command_redoes(tmp_path, monkeypatch):
    import rlcg.rollout
    from rlcg.eval import transfer
    from rlcg.interrupts import Interrupted

    def interrupted_rollout(spec, sink, **kwargs):
        raise rlcg.rollout.RolloutInterrupted(rlcg.rollout.RolloutSummary(episodes=3), spec.episodes)

    monkeypatch.setattr(rlcg.rollout, "rollout", interrupted_rollout)
    out = tmp_path / "sim"
    with pytest.raises(
        Interrupted, match="collect sim: 3 of 10 episodes finished; an unfinished collection is not kept"
    ):
        transfer._collect(out, "sim", "scripted", 10, 0, "train", 1, False, "collect sim")
    assert not (out / ".complete").exists()  # so the next run collects it again
    with pytest.raises(Interrupted, match="eval sim-only in sim: 3 of 10 episodes finished; the same command keeps"):
        transfer._evaluate(tmp_path / "policy", "sim", 10, 1, False, "eval sim-only in sim")
