"""Draw docs/images/target-three-scene-sets.png: issue 5's target on three sets of evaluation scenes.

usage: python scripts/plot_target_scenes.py [OUT_PNG]

The counts are the successes (of 300 episodes per training seed and scene set) behind the tables
of "Three sets of evaluation scenes" in docs/results.md, which gives the commands. Each point is
one policy over its three training seeds (900 episodes) on one scene set, or over all three sets
(2,700), with its 95% Wilson interval. The target is 10 points under the sim policy in sim on the
same scenes with the same search (300 episodes per set, 900 over all three).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rlcg.eval.stats import wilson_interval

EPISODES = 300  # per training seed and scene set
SCENE_SETS = (1000, 2000, 3000)  # rlcg eval --seed

LABELS = (
    "rounds, step 6,000 (the preset's 1,000 real episodes)",
    "the same, calibrated",
    "+ 1 real round, calibrated (2,000 real episodes)",
    "+ 2 real rounds, calibrated (3,000 real episodes)",
)
STYLES = (("tab:grey", "s"), ("tab:blue", "o"), ("tab:orange", "D"), ("tab:red", "^"))

# search, the sim policy's successes in sim per scene set, and per policy of LABELS
# {scene set: successes of training seeds 0, 1, 2}
Panel = tuple[str, dict[int, int], tuple[dict[int, tuple[int, int, int]], ...]]
PANELS: list[Panel] = [
    (
        "CEM 2 x 64 (QT-Opt's search)",
        {1000: 275, 2000: 274, 3000: 269},
        (
            {1000: (237, 238, 221), 2000: (233, 245, 233), 3000: (238, 235, 231)},
            {1000: (242, 240, 237), 2000: (236, 237, 230), 3000: (248, 233, 240)},
            {1000: (243, 252, 237), 2000: (243, 251, 245), 3000: (235, 246, 246)},
            {1000: (248, 250, 239), 2000: (244, 249, 245), 3000: (250, 249, 246)},
        ),
    ),
    (
        "CEM 3 x 256, top 12",
        {1000: 279, 2000: 282, 3000: 280},
        (
            {1000: (258, 256, 226), 2000: (238, 256, 239), 3000: (254, 254, 247)},
            {1000: (264, 256, 239), 2000: (239, 250, 259), 3000: (260, 260, 259)},
            {1000: (248, 259, 251), 2000: (254, 265, 261), 3000: (267, 259, 255)},
            {1000: (255, 258, 255), 2000: (253, 263, 252), 3000: (264, 268, 256)},
        ),
    ),
]


def rate(successes: int, episodes: int) -> tuple[float, float, float]:
    """Success (%) with its 95% Wilson interval (%)."""
    lo, hi = wilson_interval(successes, episodes)
    return 100 * successes / episodes, 100 * lo, 100 * hi


def pooled(per_set: dict[int, tuple[int, int, int]]) -> tuple[float, float, float]:
    """Success (%) over every seed and scene set, with its 95% Wilson interval (%)."""
    return rate(sum(sum(s) for s in per_set.values()), EPISODES * sum(len(s) for s in per_set.values()))


def sim_policy_pooled(sim: dict[int, int]) -> float:
    return 100 * sum(sim.values()) / (EPISODES * len(sim))


def points_under_sim(sim: dict[int, int], per_set: dict[int, tuple[int, int, int]]) -> tuple[float, float, float]:
    """How many points the policy is under the sim policy over all scene sets, with a 95% interval
    (normal approximation to the difference of two independent proportions)."""
    n_sim, n_policy = EPISODES * len(sim), EPISODES * sum(len(s) for s in per_set.values())
    p_sim, p_policy = sum(sim.values()) / n_sim, sum(sum(s) for s in per_set.values()) / n_policy
    half = 1.96 * math.sqrt(p_sim * (1 - p_sim) / n_sim + p_policy * (1 - p_policy) / n_policy)
    gap = p_sim - p_policy
    return 100 * gap, 100 * (gap - half), 100 * (gap + half)


def plot(out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    columns = [*SCENE_SETS, "all"]
    for ax, (title, sim, policies) in zip(axes, PANELS):
        for x, column in enumerate(columns):
            level = (sim_policy_pooled(sim) if column == "all" else 100 * sim[column] / EPISODES) - 10
            ax.hlines(level, x - 0.4, x + 0.4, colors="black", linestyles=":", lw=1.5)
            ax.text(x - 0.42, level - 0.2, f"target\n{level:.1f}", ha="left", va="top", fontsize=7)
        for i, (label, (colour, marker), per_set) in enumerate(zip(LABELS, STYLES, policies)):
            stats = [rate(sum(per_set[s]), EPISODES * len(per_set[s])) for s in SCENE_SETS] + [pooled(per_set)]
            ax.errorbar(
                [x + (i - 1.5) * 0.15 for x in range(len(columns))],
                [m for m, _, _ in stats],
                yerr=[[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]],
                color=colour,
                marker=marker,
                capsize=3,
                ls="none",
                label=label,
            )
        ax.set_xticks(range(len(columns)))
        ax.set_xticklabels([f"scenes of\nseed {s} (900)" for s in SCENE_SETS] + ["all three\n(2,700)"])
        ax.axvline(len(SCENE_SETS) - 0.5, color="grey", lw=0.8)
        ax.set_ylim(72, 91)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("success in pseudo-real (%), 3 training seeds, 95% CI")
    fig.suptitle(
        "rl-cyclegan against the target: 10 points under the sim policy in sim on the same scenes, same search"
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    plot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/target-three-scene-sets.png"))
