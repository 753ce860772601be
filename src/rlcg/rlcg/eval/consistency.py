"""Where a GAN run's transfer loses the grasping task: the six Q-values of L_RL-scene, each scored
against the outcomes of recorded grasps, and how far the three values of one scene disagree.

On sim data (x) the triple is Q_sim(x), Q_real(G(x)), Q_sim(F(G(x))); on real data (y) it is
Q_real(y), Q_sim(F(y)), Q_real(G(F(y))). Read together:

- Q_sim(x) is the ranking skill the method starts from; Q_sim(F(y)) far below it means F loses or
  alters what decides a grasp (objects, gripper, bin edges) on the way from real to sim.
- Q_real(G(x)) is what Q_real learned on translated sim data; Q_real(y) below it means that skill
  does not carry over from G(x) to real images: G(x) does not look like y where it matters.
- The pairwise distances are the terms of L_RL-scene (mean squared error of success probabilities).

Runs of cyclegan have no Q_sim: the sim-only policy they started from (``--init-q``) stands in.

Paired scenes. An episode's scene depends on its seed alone, not on the domain's look, so sim and
real data collected with the same ``--seed`` by a policy that does not look at the image
(scripted, oracle, random) hold the same scenes, grasps and outcomes. Such pairs compare G(x)
with the y it should have become, pixel by pixel, and Q_real(G(x)) with Q_real(y) on the same
grasps, free of the sampling difference between two sets of scenes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from rlcg.errors import RlcgError
from rlcg.eval.offline import check_finite, final_grasps, outcome_scores
from rlcg.gan import losses

# The three Q-values of each domain's scenes, as (SixQ field, label) in the paper's order.
TRIPLES = {
    "sim": (("q_x", "Q_sim(x)"), ("q_x1", "Q_real(G(x))"), ("q_x2", "Q_sim(F(G(x)))")),
    "real": (("q_y", "Q_real(y)"), ("q_y1", "Q_sim(F(y))"), ("q_y2", "Q_real(G(F(y)))")),
}


@torch.no_grad()
def scene_consistency(
    run: str | Path, sim_dataset, real_dataset, q_sim: str | Path | None = None, progress: bool = False
) -> dict:
    """The six Q-values of a cyclegan or rl-cyclegan run on the final grasps of ``sim_dataset`` and
    ``real_dataset`` (TransitionDatasets): per value its outcome scores (AUC, cross-entropy, mean Q);
    per domain the three pairwise distances and their sum (that domain's half of L_RL-scene).
    ``q_sim``: a policy checkpoint to use as Q_sim (default: the run's own, else the one it started from)."""
    from rlcg.gan.trainer import load_run, to_gan_range, to_q_range
    from rlcg.models.qnet import QNetwork
    from rlcg.rl.policy import load_policy

    trained = load_run(run)
    if trained.F is None:
        raise RlcgError(f"{run}: a {trained.config.method} run has no F; the six Q-values need cyclegan or rl-cyclegan")
    q_sim_net, q_sim_source = trained.Q_sim, "the run's Q_sim"
    if q_sim is not None or q_sim_net is None:
        source = q_sim if q_sim is not None else trained.init_q
        if source is None:
            raise RlcgError(
                f"{run}: a {trained.config.method} run has no Q_sim and did not start from a policy; pass --q-sim"
            )
        if q_sim is None and not Path(source).exists():
            raise RlcgError(
                f"{run}: Q_sim would be the policy the run started from, {source}, which is not here; pass --q-sim"
            )
        q_sim_net, q_sim_source = load_policy(source).qnet.eval(), str(source)
    if q_sim_net.config.image_size != trained.Q_real.config.image_size:
        raise RlcgError(f"Q_sim ({q_sim_source}) and the run's Q_real take images of different sizes")
    nets = {"Q_sim": q_sim_net, "Q_real": trained.Q_real}
    size = trained.Q_real.config.image_size

    def to_q(gen, images: torch.Tensor) -> torch.Tensor:
        return to_q_range(gen(to_gan_range(images)))

    from tqdm import tqdm

    result: dict = {"run": str(run), "method": trained.config.method, "q_sim": q_sim_source, "data": {}}
    scored: dict = {}
    grasps = {domain: final_grasps(dataset, size) for domain, dataset in (("sim", sim_dataset), ("real", real_dataset))}
    bar = tqdm(total=sum(len(g[0]) for g in grasps.values()), desc="six Q-values", unit="grasp", disable=not progress)
    for domain, dataset in (("sim", sim_dataset), ("real", real_dataset)):
        rows, actions, rewards = grasps[domain]
        values: dict[str, list[np.ndarray]] = {key: [] for key, _ in TRIPLES[domain]}
        for i in range(0, len(rows), 100):
            bar.update(len(rows[i : i + 100]))
            image = QNetwork.preprocess(torch.as_tensor(np.asarray(dataset.images[rows[i : i + 100]])))
            a = torch.as_tensor(actions[i : i + 100])
            if domain == "sim":
                translated = to_q(trained.G, image)
                images = {"x": image, "G(x)": translated, "F(G(x))": to_q(trained.F, translated)}
            else:
                translated = to_q(trained.F, image)
                images = {"y": image, "F(y)": translated, "G(F(y))": to_q(trained.G, translated)}
            for key in values:
                net, name = losses.SIX_Q_INPUTS[key]
                values[key].append(torch.sigmoid(nets[net](images[name], a)).double().numpy())
        q = {key: np.concatenate(v) for key, v in values.items()}
        for key, label in TRIPLES[domain]:
            check_finite(q[key], label)
        distances = {  # the three pairs of the triple, in the paper's order
            f"d({la}, {lb})": float(np.mean((q[ka] - q[kb]) ** 2))
            for (ka, la), (kb, lb) in itertools.combinations(TRIPLES[domain], 2)
        }
        result["data"][domain] = {
            "path": str(dataset.path),
            "values": {label: outcome_scores(q[key], rewards) for key, label in TRIPLES[domain]},
            "distances": distances,
            "rl_scene": sum(distances.values()),
        }
        scored[domain] = (rows, actions, rewards, q)
    bar.close()
    result["paired"] = _paired(trained, sim_dataset, real_dataset, scored["sim"], scored["real"])
    return result


def paired_grasps(
    sim_dataset,
    sim_rows: np.ndarray,
    sim_actions: np.ndarray,
    real_dataset,
    real_rows: np.ndarray,
    real_actions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the two final-grasp row arrays) of grasps made in the same scene: episodes of
    the same seed whose recorded grasp action agrees. A policy that looks at the image acts
    differently on x and y, and its episodes do not pair."""

    def seeds(dataset, rows):
        episode = np.asarray(dataset.episode_index)[rows]
        return np.array([int(dataset.episodes[int(e)]["seed"]) for e in episode])

    real_at = {seed: i for i, seed in enumerate(seeds(real_dataset, real_rows))}
    pairs = [
        (i, real_at[seed])
        for i, seed in enumerate(seeds(sim_dataset, sim_rows))
        if seed in real_at and np.allclose(sim_actions[i], real_actions[real_at[seed]], atol=1e-6)
    ]
    pos = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return pos[:, 0], pos[:, 1]


def _paired(trained, sim_dataset, real_dataset, sim, real) -> dict | None:
    """Translation and Q_real on paired scenes (module docstring); None when no scene pairs."""
    from rlcg.gan.trainer import to_gan_range, to_q_range
    from rlcg.models.qnet import QNetwork

    (s_rows, s_actions, s_rewards, s_q), (r_rows, r_actions, r_rewards, r_q) = sim, real
    i, j = paired_grasps(sim_dataset, s_rows, s_actions, real_dataset, r_rows, r_actions)
    same = s_rewards[i] == r_rewards[j]
    i, j = i[same], j[same]  # the physics ignores the look: an outcome that differs means another scene
    if len(i) == 0:
        return None
    pixel = {"x, y": 0.0, "G(x), y": 0.0, "F(y), x": 0.0}
    for k in range(0, len(i), 100):
        x = QNetwork.preprocess(torch.as_tensor(np.asarray(sim_dataset.images[s_rows[i[k : k + 100]]])))
        y = QNetwork.preprocess(torch.as_tensor(np.asarray(real_dataset.images[r_rows[j[k : k + 100]]])))
        g_x, f_y = to_q_range(trained.G(to_gan_range(x))), to_q_range(trained.F(to_gan_range(y)))
        for key, (a, b) in {"x, y": (x, y), "G(x), y": (g_x, y), "F(y), x": (f_y, x)}.items():
            pixel[key] += float((a - b).abs().sum(dim=(1, 2, 3)).sum())
    h, w = sim_dataset.image_size
    per_image = 255.0 / (3 * h * w)  # to the mean absolute difference in 8-bit levels
    q_gx, q_y = s_q["q_x1"][i], r_q["q_y"][j]
    result = {
        "scenes": int(len(i)),
        "pixel_l1": {key: v * per_image / len(i) for key, v in pixel.items()},
        "values": {"Q_real(G(x))": None, "Q_real(y)": None},
        "mean_abs_q_difference": float(np.mean(np.abs(q_gx - q_y))),
    }
    rewards = s_rewards[i]
    if 0 < rewards.sum() < len(rewards):  # ranking needs both outcomes
        result["values"] = {"Q_real(G(x))": outcome_scores(q_gx, rewards), "Q_real(y)": outcome_scores(q_y, rewards)}
    return result


def _score_line(label: str, s: dict) -> str:
    return f"  {label:<17} AUC {s['auc']:.3f}  cross-entropy {s['cross_entropy']:.3f}  mean Q {s['mean_q']:.3f}"


def format_consistency(result: dict) -> str:
    lines = [f"{result['run']} ({result['method']}; Q_sim: {result['q_sim']})"]
    for domain, r in result["data"].items():
        first = next(iter(r["values"].values()))
        lines.append(f"{domain} data {r['path']}: {first['grasps']} grasps, {first['success_rate']:.1%} successful")
        lines += [_score_line(label, s) for label, s in r["values"].items()]
        lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in r["distances"].items()) + f"; sum {r['rl_scene']:.4f}")
    paired = result.get("paired")
    if paired is None:
        lines.append("paired scenes: none (collect sim and real data with the same --seed and a scripted policy)")
        return "\n".join(lines)
    lines.append(
        f"paired scenes: {paired['scenes']}; mean absolute pixel difference (0-255): "
        + ", ".join(f"{k} {v:.1f}" for k, v in paired["pixel_l1"].items())
    )
    lines += [_score_line(label, s) for label, s in paired["values"].items() if s is not None]
    lines.append(f"  mean |Q_real(G(x)) - Q_real(y)| {paired['mean_abs_q_difference']:.4f}")
    return "\n".join(lines)
