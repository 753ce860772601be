"""The transfer benchmark end to end (`rlcg bench transfer --preset smoke`), with a user's own
domain YAML as the hidden reality: checks that the pipeline runs and reports, not the numbers."""

from __future__ import annotations

import json

import yaml

from rlcg.cli import main
from rlcg.eval.transfer import METHOD_ORDER
from rlcg.paths import config_dir


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


def test_bench_transfer_from_a_given_sim_only_policy(tmp_path, capsys):
    """The paper preset's arrangement at smoke size: the shipped sim-only policy is used, not trained;
    its own episodes join the sim data and every other method starts from it."""
    from rlcg.rl.policy import default_policy_path

    out = tmp_path / "report"
    args = ["bench", "transfer", "--preset", "smoke", "--sim-only-policy", "default", "--no-progress", "--json"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["sim_only_policy"] == str(default_policy_path())
    assert list(report["methods"]) == list(METHOD_ORDER)
    assert not (out / "runs" / "sim-only").exists()
    assert json.loads((out / "data" / "sim-onpolicy" / ".complete").read_text())["episodes"] == 40
    for method in METHOD_ORDER[1:]:
        training = json.loads((out / "runs" / method / "policy" / "config.json").read_text())["config"]["training"]
        assert training["init_q"] == str(default_policy_path()), method
    assert "not trained here" in (out / "report.md").read_text()


def test_bench_transfer_refuses_a_missing_sim_only_policy_before_collecting(tmp_path, capsys):
    out = tmp_path / "report"
    args = ["bench", "transfer", "--sim-only-policy", str(tmp_path / "nowhere"), "--out", str(out)]
    assert main([*args, "--no-progress"]) != 0
    assert "nowhere" in capsys.readouterr().err
    assert not (out / "data").exists()
