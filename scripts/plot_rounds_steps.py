"""Draw docs/images/onpolicy-rounds-steps.png: rl-cyclegan's success against joint steps, with and without rounds.

usage: python scripts/plot_rounds_steps.py [OUT_PNG]

The points are the per-seed successes (%, 300 episodes each, training seeds 0 and 1) behind the two-seed
figures of docs/results.md's tables ("Q_real's own grasps" and the paragraphs after it), which give each
one's command. Each is drawn over both seeds with its 95% Wilson interval over the 600 episodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rlcg.eval.stats import wilson_interval

EPISODES_PER_SEED = 300

# series: label, colour, marker, joined by a line, {joint step: (seed 0 %, seed 1 %)}
Series = tuple[str, str, str, bool, dict[int, tuple[float, float]]]

NO_ROUND = "no round (3,000: the control)"
LATE_ROUNDS = "rounds at 2,000 and 3,000 steps"
EVERY_1000 = "a round every 1,000 steps"
DECAYED = "from the step 1,000 before: its rates decayed to 0"
FRESH = "from step 6,000: a fresh Q_real, 2,000 steps"
REAL_RL = "from step 6,000: real RL data at a quarter share"

QTOPT_SEARCH: list[Series] = [
    (NO_ROUND, "tab:grey", "s", True, {1000: (55.7, 64.3), 2000: (73.0, 65.3), 3000: (72.3, 71.0)}),
    (LATE_ROUNDS, "tab:blue", "o", True, {2000: (73.0, 65.3), 3000: (78.7, 72.7), 4000: (73.0, 75.7)}),
    (
        EVERY_1000,
        "tab:orange",
        "D",
        True,
        {
            1000: (55.7, 64.3),
            2000: (73.3, 74.7),
            3000: (75.7, 77.0),
            4000: (75.3, 78.3),
            5000: (77.0, 78.3),
            6000: (79.0, 79.3),
            7000: (75.0, 78.3),
        },
    ),
    (DECAYED, "tab:green", "^", False, {7000: (76.3, 81.0), 8000: (75.3, 80.7)}),
    (FRESH, "tab:purple", "*", False, {8000: (75.0, 78.7)}),
    (REAL_RL, "tab:red", "X", False, {7000: (79.7, 78.0), 8000: (80.0, 77.3)}),
]

POLYAK_WIDE_SEARCH: list[Series] = [
    (NO_ROUND, "tab:grey", "s", True, {2000: (74.0, 69.7), 3000: (77.3, 72.0)}),
    (LATE_ROUNDS, "tab:blue", "o", True, {2000: (74.0, 69.7), 3000: (81.7, 76.0), 4000: (82.7, 80.0)}),
    (
        EVERY_1000,
        "tab:orange",
        "D",
        True,
        {3000: (76.3, 78.3), 4000: (82.3, 88.0), 5000: (79.7, 82.0), 6000: (81.3, 83.7), 7000: (82.0, 85.3)},
    ),
    (DECAYED, "tab:green", "^", False, {7000: (83.0, 83.3), 8000: (80.7, 81.3)}),
    (FRESH, "tab:purple", "*", False, {8000: (82.3, 84.0)}),
    (REAL_RL, "tab:red", "X", False, {8000: (85.7, 83.3)}),
]

# title, the sim policy's success in sim at the same search (%), series
PANELS = [
    ("last weights, CEM 2 x 64 (QT-Opt's search)", 91.7, QTOPT_SEARCH),
    ("Polyak target, CEM 3 x 256", 93.0, POLYAK_WIDE_SEARCH),
]


def over_both_seeds(per_seed: tuple[float, float]) -> tuple[float, float, float]:
    """Success (%) over both seeds' episodes, with its 95% Wilson interval (%)."""
    successes = sum(round(p * EPISODES_PER_SEED / 100) for p in per_seed)
    episodes = EPISODES_PER_SEED * len(per_seed)
    lo, hi = wilson_interval(successes, episodes)
    return 100 * successes / episodes, 100 * lo, 100 * hi


def plot(out: Path) -> None:
    last = max(step for _, _, series in PANELS for *_, points in series for step in points)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, (title, sim, series) in zip(axes, PANELS):
        for i, (label, colour, marker, joined, points) in enumerate(series):
            steps = sorted(points)
            stats = [over_both_seeds(points[s]) for s in steps]
            ax.errorbar(
                [s + (i - 2) * 40 for s in steps],  # a small shift so that equal steps do not hide each other
                [m for m, _, _ in stats],
                yerr=[[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]],
                color=colour,
                marker=marker,
                markersize=10 if marker == "*" else 6,
                capsize=3,
                ls="-" if joined else "none",
                label=label,
            )
        for level, text in ((sim, f"sim policy in sim, same search ({sim}%)"), (sim - 10, "target (10 under)")):
            ax.axhline(level, ls="--" if level == sim else ":", color="grey", lw=1)
            ax.text(last + 150, level, text, va="bottom", ha="right", fontsize=8, color="grey")
        ax.set_xticks(range(1000, last + 1000, 1000))
        ax.set_xlim(800, last + 200)
        ax.set_ylim(50, 96)
        ax.set_xlabel("joint training steps")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("success in pseudo-real (%), two seeds, 95% CI")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("rl-cyclegan + identity term: Q_real's own grasps in sim through G, 5,000 episodes a round")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    plot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/onpolicy-rounds-steps.png"))
