"""Compare one policy's grasps under two CEM searches, scene by scene.

usage: python scripts/pair_searches.py POLICY NARROW WIDE [--near M]

NARROW and WIDE are two recorded evaluations of POLICY on the same scenes (the same `rlcg eval
--seed`, domain and objects): the bag directories of `rlcg eval --record`, or their ingested
datasets. For example QT-Opt's search and `--cem 3 256 12`. Episodes are paired by their seed;
a pair whose first images differ is not the same scene and stops the script. Printed as JSON:
the successes of each search and in how many scenes only one of them succeeded; how far apart
the two searches put their grasps (within ``--near`` metres in the table plane counts as the same
place); and POLICY's Q at each chosen grasp: its mean, and how well it ranks the outcomes of the
chosen grasps (ROC AUC). A calibrated policy's recorded grasps include its offset, which is taken
off before Q is read, so Q is scored at the grasp its search chose.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from rlcg.data.dataset import TransitionDataset
from rlcg.eval.offline import final_grasps, roc_auc
from rlcg.rl.policy import load_policy


def recorded_scenes(path: str, image_size: int) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
    """{episode seed: (image, grasp, reward)} of the final grasps of a recorded evaluation."""
    dataset = TransitionDataset.open(path)
    rows, actions, rewards = final_grasps(dataset, image_size)
    episodes = np.asarray(dataset.episode_index)[rows]
    return {
        int(dataset.episodes[int(e)]["seed"]): (np.asarray(dataset.images[row]), actions[i], float(rewards[i]))
        for i, (e, row) in enumerate(zip(episodes, rows))
    }


def pair_searches(policy_path: str, narrow: str, wide: str, near: float = 0.02) -> dict:
    policy = load_policy(policy_path)
    offset = np.array([*policy.grasp_offset, 0.0, 0.0])
    a, b = recorded_scenes(narrow, policy.image_size), recorded_scenes(wide, policy.image_size)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit(f"{narrow} and {wide} share no episode seed: record both with the same rlcg eval --seed")
    for seed in seeds:
        if not np.array_equal(a[seed][0], b[seed][0]):
            raise SystemExit(f"episode seed {seed}: the two recordings' images differ, so they are not the same scene")

    def chosen(scenes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grasps = np.stack([scenes[s][1] for s in seeds])
        q = np.array([policy.q_values(scenes[s][0], (scenes[s][1] - offset)[None])[0] for s in seeds])
        return grasps, q, np.array([scenes[s][2] for s in seeds])

    (grasp_a, q_a, r_a), (grasp_b, q_b, r_b) = chosen(a), chosen(b)
    distance = np.hypot(*(grasp_a[:, :2] - grasp_b[:, :2]).T)

    def scores(q: np.ndarray, r: np.ndarray) -> dict:
        return {"success_rate": float(r.mean()), "mean_q": float(q.mean()), "auc": roc_auc(q, r)}

    return {
        "policy": policy_path,
        "scenes": len(seeds),
        "narrow": {"data": narrow, **scores(q_a, r_a)},
        "wide": {"data": wide, **scores(q_b, r_b)},
        "only_narrow_succeeded": int(((r_a == 1) & (r_b == 0)).sum()),
        "only_wide_succeeded": int(((r_a == 0) & (r_b == 1)).sum()),
        "same_place_fraction": float(np.mean(distance <= near)),
        "median_distance_m": float(np.median(distance)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", help="the policy checkpoint both evaluations ran")
    parser.add_argument("narrow", help="the first recorded evaluation (bags or dataset)")
    parser.add_argument("wide", help="the second, on the same scenes (bags or dataset)")
    parser.add_argument("--near", type=float, default=0.02, help="metres within which two grasps are one place")
    args = parser.parse_args(argv)
    print(json.dumps(pair_searches(args.policy, args.narrow, args.wide, args.near), indent=2))


if __name__ == "__main__":
    main()
