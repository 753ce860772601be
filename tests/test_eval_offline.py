"""Offline scoring of a policy's Q against recorded grasp outcomes (`rlcg eval-data`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlcg.cli import main
from rlcg.data.dataset import TransitionDataset
from rlcg.errors import RlcgError
from rlcg.eval.offline import final_grasps, roc_auc, score_outcomes
from rlcg.rl.policy import load_policy


def test_roc_auc_on_hand_made_cases():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert roc_auc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == 0.75  # 3 of the 4 (success, failure) pairs in order
    assert roc_auc(np.full(4, 0.5), labels) == 0.5  # ties count half
    assert roc_auc(np.array([0.1, 0.3, 0.3, 0.4]), labels) == 0.875


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        (np.array([0.1, 0.2]), np.array([1, 1]), "successes and failures"),
        (np.array([0.1, np.nan]), np.array([0, 1]), "NaN"),
        (np.array([0.1, 0.2, 0.3]), np.array([0, 1]), "one length"),
    ],
)
def test_roc_auc_refuses_what_it_cannot_rank(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        roc_auc(scores, labels)


@pytest.fixture(scope="module")
def mixed_bag(tmp_path_factory):
    """Ten scripted grasps in sim; seed 3 gives 4 successes and 6 failures."""
    bag = tmp_path_factory.mktemp("bags") / "mixed"
    args = ["collect", "--policy", "scripted", "--episodes", "10", "--seed", "3", "--out", str(bag), "--no-progress"]
    assert main(args) == 0
    return bag


def test_score_outcomes_agrees_with_the_policy_one_image_at_a_time(mixed_bag):
    policy = load_policy("default")
    ds = TransitionDataset.open(mixed_bag)
    rows = np.flatnonzero(np.asarray(ds.dones))
    rewards = np.asarray(ds.rewards)[rows]
    assert 0 < rewards.sum() < len(rows), "the fixture must hold both outcomes"
    # the batched path against LearnedPolicy.q_values, image by image
    q = np.array([policy.q_values(np.array(ds.images[i]), np.array(ds.actions[i : i + 1]))[0] for i in rows])
    scored = score_outcomes(policy.qnet, ds, batch_size=3)
    assert scored["grasps"] == len(rows) == 10
    assert scored["successes"] == int(rewards.sum())
    assert scored["mean_q"] == pytest.approx(q.mean(), abs=1e-5)
    assert scored["auc"] == pytest.approx(roc_auc(q, rewards))
    p = np.clip(q, 1e-7, 1 - 1e-7)
    assert scored["cross_entropy"] == pytest.approx(-(rewards * np.log(p) + (1 - rewards) * np.log(1 - p)).mean(), 1e-4)


def test_score_outcomes_needs_both_outcomes(mixed_bag):
    ds = TransitionDataset.open(mixed_bag)
    failures = ds.subset(np.flatnonzero(np.asarray(ds.rewards) == 0))
    with pytest.raises(RlcgError, match=f"all {len(failures)} recorded grasps failed"):
        score_outcomes(load_policy("default").qnet, failures)


def test_score_outcomes_refuses_a_diverged_q_network(mixed_bag):
    qnet = load_policy("default").qnet
    with torch.no_grad():
        next(qnet.parameters()).fill_(float("nan"))
    with pytest.raises(RlcgError, match="NaN or infinity on 10 grasps"):
        score_outcomes(qnet, TransitionDataset.open(mixed_bag))


def test_eval_data_cli(mixed_bag, tmp_path, capsys):
    assert main(["eval-data", "--data", str(mixed_bag), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    scored = report["data"][str(mixed_bag)]
    assert scored["grasps"] == 10 and 0.0 <= scored["auc"] <= 1.0
    assert main(["eval-data", "--data", str(mixed_bag)]) == 0
    rate = float(np.mean(TransitionDataset.open(mixed_bag).rewards))
    assert f"10 grasps, {rate:.1%} successful; AUC" in capsys.readouterr().out
    assert main(["eval-data", "--data", str(tmp_path / "missing")]) == 2
    assert "no such dataset" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sim-only", "cyclegan"])
def test_train_scores_q_on_the_monitor_data_as_it_trains(method, mixed_bag, tmp_path, capsys):
    def train(run, monitor_data, *extra):
        args = ["train", "--method", method, "--sim-data", str(mixed_bag), "--out", str(run), "--steps", "3", *extra]
        if method == "cyclegan":
            args += ["--real-data", str(mixed_bag), "--gen-width", "4", "--gen-blocks", "1"]
        args += ["--monitor-data", str(monitor_data), "--monitor-every", "2", "--threads", "1", "--no-progress"]
        return main(args)

    run = tmp_path / "run"
    assert train(run, mixed_bag) == 0
    lines = [json.loads(line) for line in (run / "monitor.jsonl").read_text().splitlines()]
    assert [s["step"] for s in lines] == [0, 2, 3]  # the start, every 2 steps, the end
    assert all(s["grasps"] == 10 and 0.0 <= s["auc"] <= 1.0 for s in lines)
    # the final line scores the exported policy
    final = score_outcomes(load_policy(run / "policy").qnet, TransitionDataset.open(mixed_bag))
    assert lines[-1]["auc"] == pytest.approx(final["auc"]) and lines[-1]["mean_q"] == pytest.approx(final["mean_q"])
    capsys.readouterr()
    assert train(tmp_path / "other", tmp_path / "missing") == 2
    assert "--monitor-data" in capsys.readouterr().err and not (tmp_path / "other").exists()
    # a run killed after its checkpoint at step 3 had logged step 5: resumed, it checks 4 and 5 again,
    # and each step keeps one record, in monitor.jsonl and in TensorBoard
    with (run / "monitor.jsonl").open("a") as f:
        f.write(json.dumps({"step": 5, "auc": -1.0}) + "\n" + '{"step": 6, "au')
    _log_after_the_checkpoint(run / "tb", {5: -1.0})
    assert train(run, mixed_bag, "--steps", "5", "--resume") == 0
    lines = [json.loads(line) for line in (run / "monitor.jsonl").read_text().splitlines()]
    assert [s["step"] for s in lines] == [0, 2, 3, 4, 5] and lines[-1]["auc"] >= 0.0
    assert _tensorboard(run / "tb") == [(s["step"], pytest.approx(s["auc"])) for s in lines]
    # a run killed before its first checkpoint leaves logs but nothing to resume: a new run replaces them
    fresh = tmp_path / "fresh"
    _log_after_the_checkpoint(fresh / "tb", {0: -1.0, 2: -1.0})
    (fresh / "monitor.jsonl").write_text(json.dumps({"step": 0, "auc": -1.0}) + "\n")
    assert train(fresh, mixed_bag) == 0
    lines = [json.loads(line) for line in (fresh / "monitor.jsonl").read_text().splitlines()]
    assert [s["step"] for s in lines] == [0, 2, 3]
    assert _tensorboard(fresh / "tb") == [(s["step"], pytest.approx(s["auc"])) for s in lines]


def _log_after_the_checkpoint(logdir, values: dict[int, float]) -> None:
    """What a killed run had logged (monitor/auc) after its last checkpoint, in an event file named
    as if written before every other (TensorBoard reads a directory's files in name order, and names
    made in the same second need not sort in the order they were made)."""
    from torch.utils.tensorboard import SummaryWriter

    before = set(logdir.glob("events.out.tfevents.*")) if logdir.exists() else set()
    with SummaryWriter(str(logdir)) as writer:
        for step, value in values.items():
            writer.add_scalar("monitor/auc", value, step)
    (new,) = set(logdir.glob("events.out.tfevents.*")) - before
    new.rename(logdir / "events.out.tfevents.0000000000.killed-run")


def _tensorboard(logdir) -> list[tuple[int, float]]:
    """monitor/auc as TensorBoard shows it, after purging what resumed runs trained again."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("monitor/auc")]


# ---------------------------------------------------------------------- the six Q-values of a GAN run
def _train(run, method, data, steps=2):
    args = ["train", "--method", method, "--sim-data", str(data), "--real-data", str(data), "--init-q", "default"]
    args += ["--steps", str(steps), "--gen-width", "4", "--gen-blocks", "1", "--threads", "1", "--no-progress"]
    assert main([*args, "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def cyclegan_run(mixed_bag, tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs") / "cyclegan", "cyclegan", mixed_bag)


def _q(qnet, images, actions):
    return torch.sigmoid(qnet(images, torch.as_tensor(actions))).double().numpy()


def test_scene_consistency_scores_each_q_value_of_the_run(cyclegan_run, mixed_bag):
    from rlcg.eval.consistency import scene_consistency
    from rlcg.gan.trainer import load_generator, to_gan_range, to_q_range
    from rlcg.models.qnet import QNetwork

    ds = TransitionDataset.open(mixed_bag)
    result = scene_consistency(cyclegan_run, ds, ds)
    assert result["method"] == "cyclegan" and result["q_sim"].endswith("default_policy")  # no Q_sim: its start
    sim, real = result["data"]["sim"], result["data"]["real"]
    start, q_real = load_policy("default").qnet, load_policy(cyclegan_run / "policy").qnet
    assert sim["values"]["Q_sim(x)"] == pytest.approx(score_outcomes(start, ds))
    assert real["values"]["Q_real(y)"] == pytest.approx(score_outcomes(q_real, ds))
    # Q_sim(F(y)) and its distance to Q_real(y), by hand
    rows = np.flatnonzero(np.asarray(ds.dones))
    y, actions = QNetwork.preprocess(torch.as_tensor(np.asarray(ds.images[rows]))), np.asarray(ds.actions[rows])
    with torch.no_grad():
        f_y = to_q_range(load_generator(cyclegan_run, "F")(to_gan_range(y)))
        q_y, q_f_y = _q(q_real, y, actions), _q(start, f_y, actions)
    assert real["values"]["Q_sim(F(y))"]["mean_q"] == pytest.approx(q_f_y.mean(), abs=1e-5)
    assert real["distances"]["d(Q_real(y), Q_sim(F(y)))"] == pytest.approx(np.mean((q_y - q_f_y) ** 2), abs=1e-6)
    assert real["rl_scene"] == pytest.approx(sum(real["distances"].values()))
    assert set(sim["values"]) == {"Q_sim(x)", "Q_real(G(x))", "Q_sim(F(G(x)))"}
    # another Q_sim on request
    other = scene_consistency(cyclegan_run, ds, ds, q_sim=cyclegan_run / "policy")
    assert other["data"]["sim"]["values"]["Q_sim(x)"] == pytest.approx(score_outcomes(q_real, ds))


@pytest.fixture(scope="module")
def paired_real_bag(tmp_path_factory):
    """mixed_bag's ten scenes and grasps, rendered in pseudo-real (same seed, scripted policy)."""
    bag = tmp_path_factory.mktemp("bags") / "paired"
    args = ["collect", "--domain", "pseudo-real", "--policy", "scripted", "--episodes", "10", "--seed", "3"]
    assert main([*args, "--out", str(bag), "--no-progress"]) == 0
    return bag


def test_scene_consistency_compares_translations_on_paired_scenes(cyclegan_run, mixed_bag, paired_real_bag, capsys):
    from rlcg.eval.consistency import format_consistency, paired_grasps, scene_consistency
    from rlcg.eval.offline import final_grasps
    from rlcg.gan.trainer import load_generator, to_gan_range, to_q_range
    from rlcg.models.qnet import QNetwork

    sim, real = TransitionDataset.open(mixed_bag), TransitionDataset.open(paired_real_bag)
    result = scene_consistency(cyclegan_run, sim, real)
    paired = result["paired"]
    assert paired["scenes"] == 10
    # the same scenes: x and y differ in look only, and by hand the pixel differences agree
    s_rows, s_actions, s_rewards = final_grasps(sim, 64)
    r_rows, r_actions, r_rewards = final_grasps(real, 64)
    assert np.array_equal(s_actions, r_actions) and np.array_equal(s_rewards, r_rewards)
    x = QNetwork.preprocess(torch.as_tensor(np.asarray(sim.images[s_rows])))
    y = QNetwork.preprocess(torch.as_tensor(np.asarray(real.images[r_rows])))
    with torch.no_grad():
        g_x = to_q_range(load_generator(cyclegan_run)(to_gan_range(x)))
    assert paired["pixel_l1"]["x, y"] == pytest.approx(float((x - y).abs().mean()) * 255, rel=1e-4)
    assert paired["pixel_l1"]["G(x), y"] == pytest.approx(float((g_x - y).abs().mean()) * 255, rel=1e-4)
    assert paired["pixel_l1"]["x, y"] > 10  # pseudo-real's look is far from sim's
    q_real = load_policy(cyclegan_run / "policy").qnet
    assert paired["values"]["Q_real(y)"] == pytest.approx(score_outcomes(q_real, real))
    with torch.no_grad():
        q_gx, q_y = _q(q_real, g_x, s_actions), _q(q_real, y, s_actions)
    assert paired["mean_abs_q_difference"] == pytest.approx(np.abs(q_gx - q_y).mean(), abs=1e-6)
    # a scene is one seed and one grasp: other grasps in it, or other seeds, do not pair
    i, j = paired_grasps(sim, s_rows, s_actions, real, r_rows, r_actions + 0.01)
    assert len(i) == len(j) == 0
    i, j = paired_grasps(sim, s_rows[:4], s_actions[:4], real, r_rows[4:], r_actions[4:])
    assert len(i) == 0
    # the CLI prints the pairs, and says how to get them when there are none
    base = ["eval-consistency", str(cyclegan_run), "--sim-data", str(mixed_bag)]
    assert main([*base, "--real-data", str(paired_real_bag)]) == 0
    assert "paired scenes: 10; mean absolute pixel difference" in capsys.readouterr().out
    assert "paired scenes: none (collect sim and real data with the same --seed" in format_consistency(
        {**result, "paired": None}
    )


def test_eval_consistency_cli_and_its_refusals(cyclegan_run, mixed_bag, tmp_path, capsys):
    base = ["eval-consistency", str(cyclegan_run), "--sim-data", str(mixed_bag), "--real-data", str(mixed_bag)]
    assert main([*base, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["real"]["values"]["Q_real(y)"]["grasps"] == 10
    assert main(base) == 0
    out = capsys.readouterr().out
    rate = float(np.mean(TransitionDataset.open(mixed_bag).rewards))
    assert "Q_sim(F(G(x)))" in out and "Q_real(G(F(y)))" in out and f"10 grasps, {rate:.1%} successful" in out
    assert "paired scenes: 10; mean absolute pixel difference (0-255): x, y 0.0" in out  # the same data twice
    assert main([*base[:3], str(tmp_path / "missing"), *base[4:]]) == 2
    assert "--sim-data" in capsys.readouterr().err
    assert main(["eval-consistency", str(tmp_path), *base[2:]]) == 2
    assert "no GAN run here" in capsys.readouterr().err
    gan_run = _train(tmp_path / "gan", "gan", mixed_bag, steps=1)
    assert main(["eval-consistency", str(gan_run), *base[2:]]) == 2
    assert "has no F" in capsys.readouterr().err


# ---------------------------------------------------------------------- datasets translated by a run
def test_translate_writes_g_of_each_image_keeping_the_grasps_and_train_q_takes_it(
    cyclegan_run, mixed_bag, tmp_path, capsys
):
    from rlcg.data.store import read_index
    from rlcg.gan.trainer import load_generator, to_gan_range
    from rlcg.models.qnet import QNetwork

    out = tmp_path / "g-of-sim"
    assert main(["translate", str(cyclegan_run), "--data", str(mixed_bag), "--out", str(out), "--no-progress"]) == 0
    assert "10 episodes (10 transitions)" in capsys.readouterr().out
    source, translated = TransitionDataset.open(mixed_bag), TransitionDataset.open(out)
    for column in ("actions", "rewards", "dones", "episode_index", "step_index"):
        assert np.array_equal(np.asarray(getattr(source, column)[:]), np.asarray(getattr(translated, column)[:]))
    assert [e["seed"] for e in translated.episodes] == [e["seed"] for e in source.episodes]
    assert set(translated.domains) == {"G(sim)"} and {e["domain"] for e in translated.episodes} == {"G(sim)"}
    record = read_index(out)["translation"]
    assert record["generator"] == "G" and record["method"] == "cyclegan" and record["run"] == str(cyclegan_run)
    # both image columns are G's output, by hand, to the rounding of uint8
    G = load_generator(cyclegan_run)
    for column in ("images", "next_images"):
        x = QNetwork.preprocess(torch.tensor(np.asarray(getattr(source, column)[:])))
        with torch.no_grad():
            expected = (G(to_gan_range(x)).permute(0, 2, 3, 1).numpy() + 1.0) * 127.5
        got = np.asarray(getattr(translated, column)[:]).astype(np.float64)
        assert np.abs(got - expected).max() <= 0.5 + 1e-3
        assert np.abs(got - np.asarray(getattr(source, column)[:])).mean() > 1  # translated, not copied
    # train-q takes it like any dataset
    args = ["train-q", "--data", str(out), "--out", str(tmp_path / "q"), "--steps", "2", "--batch-size", "4"]
    assert main([*args, "--threads", "1", "--no-progress"]) == 0
    assert load_policy(tmp_path / "q").qnet is not None


def test_translate_with_f_and_its_refusals(cyclegan_run, mixed_bag, tmp_path, capsys, monkeypatch):
    from rlcg.gan import translate

    base = ["translate", str(cyclegan_run), "--data", str(mixed_bag), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "f"), "--generator", "F"]) == 0
    assert set(TransitionDataset.open(tmp_path / "f").domains) == {"F(sim)"}
    # a dataset translated once is not appended to with raw bags
    assert main(["data", "ingest", str(mixed_bag), "--out", str(tmp_path / "f"), "--append", "--no-progress"]) == 2
    assert "translated by F" in capsys.readouterr().err
    # an existing output is left as it is
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main([*base, "--out", str(tmp_path / "taken")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert main([*base[:3], str(tmp_path / "missing"), "--out", str(tmp_path / "m"), "--no-progress"]) == 2
    assert "no such dataset" in capsys.readouterr().err
    assert main(["translate", str(tmp_path), *base[2:], "--out", str(tmp_path / "n")]) == 2
    assert "no GAN run here" in capsys.readouterr().err
    gan_run = _train(tmp_path / "gan", "gan", mixed_bag, steps=1)
    assert main(["translate", str(gan_run), *base[2:], "--out", str(tmp_path / "n"), "--generator", "F"]) == 2
    assert "has no F" in capsys.readouterr().err
    # a translation that fails half-way leaves no output and no partial files
    calls = []

    def fail_second_call(generator, images):
        calls.append(1)
        if len(calls) > 1:
            raise translate.TranslateError("the generator returned non-finite pixels (NaN or inf)")
        return np.asarray(images)

    monkeypatch.setattr(translate, "translate_images", fail_second_call)
    assert main([*base, "--out", str(tmp_path / "half" / "ds"), "--batch-size", "4"]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert list((tmp_path / "half").iterdir()) == []


def test_translate_images_refuses_non_finite_output():
    from rlcg.gan.translate import TranslateError, translate_images

    def broken(x):
        return torch.full_like(x, float("nan"))

    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(TranslateError, match="non-finite"):
        translate_images(broken, images)
    assert translate_images(torch.tanh, images).dtype == np.uint8


# ---------------------------------------------------------------------- a policy seeing through G
def test_a_policy_seeing_through_g_acts_on_the_translation_of_each_image(cyclegan_run):
    from rlcg.gan.trainer import load_generator
    from rlcg.gan.translate import translate_images, translated_policy
    from rlcg.policies import Observation
    from rlcg.sim.world import ThreeBinWorld

    policy = load_policy(cyclegan_run / "policy")
    seeing = translated_policy(policy, cyclegan_run)
    assert {w.device for w in seeing.generator.parameters()} == {policy.device}  # G runs where Q does
    G = load_generator(cyclegan_run)
    with ThreeBinWorld(domain="sim", split="test") as world:
        image = world.reset(7)

        def decide(p, img):
            return p.act(Observation(img, world.bounds, np.random.default_rng(7), world))

        through, by_hand, plain = (
            decide(seeing, image),
            decide(policy, translate_images(G, image[None])[0]),
            decide(policy, image),
        )
        with pytest.raises(ValueError, match="uint8"):
            decide(seeing, image.astype(np.float32))
    assert np.array_equal(through.action, by_hand.action) and through.q_value == by_hand.q_value
    assert through.q_value != plain.q_value  # not the untranslated image


def test_collect_and_eval_through_g_record_the_sim_images_and_refuse_what_does_not_fit(
    cyclegan_run, mixed_bag, tmp_path, capsys
):
    from rlcg.gan.translate import TranslateError, translated_policy
    from rlcg.models.qnet import QNetConfig, QNetwork
    from rlcg.rl.policy import LearnedPolicy

    base = ["--policy", str(cyclegan_run / "policy"), "--episodes", "3", "--seed", "3", "--no-progress"]
    through = ["--translate-with", str(cyclegan_run)]
    assert main(["collect", *base, *through, "--out", str(tmp_path / "bags")]) == 0
    capsys.readouterr()
    collected, scripted = TransitionDataset.open(tmp_path / "bags"), TransitionDataset.open(mixed_bag)
    # the same seeds give the same scenes as the scripted bag's first episodes: the sim images, untranslated
    assert np.array_equal(np.asarray(collected.images[:3]), np.asarray(scripted.images[:3]))
    assert all(e["policy"].endswith(f"+G({cyclegan_run})") for e in collected.episodes)
    assert main(["eval", *base, *through, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["translate_with"] == str(cyclegan_run)
    # refusals: a scripted policy, a directory without a run, a policy of another image size
    assert main(["eval", "--policy", "scripted", "--episodes", "1", *through]) == 2
    assert "applies to learned policies" in capsys.readouterr().err
    assert main(["eval", *base, "--translate-with", str(tmp_path)]) == 2
    assert "no GAN run here" in capsys.readouterr().err
    small = LearnedPolicy(QNetwork(QNetConfig(image_size=32, channels=(8, 16), merge_size=8)))
    with pytest.raises(TranslateError, match="64x64 images, the policy on 32x32"):
        translated_policy(small, cyclegan_run)


ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ROOT / "docs" / "domains"


def _load_script(name: str):
    import importlib.util

    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pair_searches_pairs_two_recorded_evaluations_scene_by_scene(tmp_path, capsys):
    """scripts/pair_searches.py: the same scenes under two searches, paired by episode seed. A
    recording of other scenes (another --seed) or through another camera (sim-camera.yaml) is refused."""
    pair = _load_script("pair_searches")

    def evaluate(out, *extra):
        args = ["eval", "--policy", "default", "--episodes", "8", "--no-progress", "--json", "--record", str(out)]
        assert main([*args, *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    # pseudo-real: the sim policy both grasps and misses there, and each search's Q needs both outcomes
    narrow = evaluate(tmp_path / "narrow", "--domain", "pseudo-real", "--cem", "1", "8", "2")
    wide = evaluate(tmp_path / "wide", "--domain", "pseudo-real")
    result = pair.pair_searches("default", str(tmp_path / "narrow"), str(tmp_path / "wide"))
    assert result["scenes"] == 8
    assert result["narrow"]["success_rate"] == pytest.approx(narrow["success_rate"])
    assert result["wide"]["success_rate"] == pytest.approx(wide["success_rate"])
    assert result["only_narrow_succeeded"] - result["only_wide_succeeded"] == narrow["successes"] - wide["successes"]
    # the policy's Q at the grasp each search chose, read from the recording
    recorded = TransitionDataset.open(tmp_path / "wide")
    rows, grasps, _ = final_grasps(recorded, 64)
    q = [load_policy("default").q_values(np.asarray(recorded.images[r]), g[None])[0] for r, g in zip(rows, grasps)]
    assert result["wide"]["mean_q"] == pytest.approx(float(np.mean(q)), abs=1e-6)
    assert 0.0 <= result["same_place_fraction"] <= 1.0 and result["median_distance_m"] >= 0.0

    evaluate(tmp_path / "look", "--domain", str(DOMAINS / "sim-camera.yaml"))
    with pytest.raises(SystemExit, match="not the same scene"):
        pair.pair_searches("default", str(tmp_path / "narrow"), str(tmp_path / "look"))
    evaluate(tmp_path / "other", "--domain", "pseudo-real", "--seed", "7")
    with pytest.raises(SystemExit, match="share no episode seed"):
        pair.pair_searches("default", str(tmp_path / "narrow"), str(tmp_path / "other"))


def test_a_gan_run_does_not_overwrite_a_sim_only_run_s_policy(mixed_bag, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--sim-data", str(mixed_bag), "--out", str(run), "--steps", "2", "--threads", "1", "--no-progress"]
    assert main([*base, "--method", "sim-only"]) == 0
    before = (run / "policy" / "config.json").read_bytes()
    capsys.readouterr()
    logs = sorted((run / "tb").iterdir())
    gan = ["--method", "gan", "--real-data", str(mixed_bag), "--gen-width", "4", "--gen-blocks", "1"]
    assert main([*base, *gan]) == 2
    assert "already holds a trained policy" in capsys.readouterr().err
    assert (run / "policy" / "config.json").read_bytes() == before
    assert sorted((run / "tb").iterdir()) == logs  # a refused start adds no TensorBoard file


def test_resume_where_there_is_no_run_says_it_starts_one(mixed_bag, tmp_path, capsys):
    new = tmp_path / "new"
    argv = ["train", "--method", "sim-only", "--sim-data", str(mixed_bag), "--out", str(new), "--steps", "2"]
    assert main([*argv, "--threads", "1", "--no-progress", "--resume"]) == 0
    assert f"note: --resume: {new} holds no sim-only run yet; starting a new one" in capsys.readouterr().err
    assert (new / "policy" / "config.json").is_file()
    argv = ["train-q", "--data", str(mixed_bag), "--out", str(tmp_path / "q"), "--steps", "2", "--batch-size", "8"]
    argv += ["--threads", "1", "--no-progress"]
    assert main([*argv, "--resume"]) == 0
    assert f"note: --resume: {tmp_path / 'q'} holds no checkpoint yet; starting a new run" in capsys.readouterr().err


def test_q_training_alone_refuses_torchrun_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "out"
    for argv in (
        ["train", "--method", "sim-only", "--sim-data", "no-data", "--out", str(out)],
        ["train", "--method", "randomized-sim", "--sim-data", "no-data", "--out", str(out)],
        ["train-q", "--data", "no-data", "--out", str(out)],
    ):
        assert main(argv) == 2
        assert "trains in one process; torchrun started 2" in capsys.readouterr().err
    assert not out.exists()


def test_wilson_interval_holds_its_rate_at_every_count_and_is_exact_at_the_ends(tmp_path):
    from rlcg.eval.report import success_figure
    from rlcg.eval.stats import wilson_interval

    # 0 of n: the upper bound is z^2 / (n + z^2)
    assert wilson_interval(0, 300) == (0.0, pytest.approx(3.8415 / 303.8415, abs=1e-5))
    assert wilson_interval(300, 300) == (pytest.approx(300 / 303.8415, abs=1e-5), 1.0)
    assert wilson_interval(45, 100) == (pytest.approx(0.3561, abs=1e-4), pytest.approx(0.5475, abs=1e-4))
    for n in range(1, 401):
        for k in (0, 1, n // 2, n - 1, n):
            lo, hi = wilson_interval(k, n)
            assert lo <= k / n <= hi, (k, n)
    # a method at 0% or 100% still draws (error bars must not be negative)
    report = {"real_domain": "pseudo-real", "methods": {}}
    for name, k in (("sim-only", 0), ("rl-cyclegan", 300)):
        report["methods"][name] = {"success_rate": k / 300, "ci95": list(wilson_interval(k, 300))}
    success_figure(report, tmp_path / "success.png")
    assert (tmp_path / "success.png").stat().st_size > 1000
