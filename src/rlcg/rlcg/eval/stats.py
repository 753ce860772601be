"""Success rates with confidence intervals."""

from __future__ import annotations

import math


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (z = 1.96 by default)."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within [0, {trials}], got {successes}")
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # at 0 and n successes the bound is exactly the rate; rounding would leave the rate outside it
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def success_report(successes: int, trials: int, per_bin: dict[int, list[int]] | None = None) -> dict:
    """The JSON object `rlcg sim` and `rlcg eval` print."""
    lo, hi = wilson_interval(successes, trials)
    report = {
        "success_rate": successes / trials if trials else 0.0,
        "ci95": [lo, hi],
        "episodes": trials,
        "successes": successes,
        "per_bin": {},
    }
    for b, (s, n) in sorted((per_bin or {}).items()):
        blo, bhi = wilson_interval(s, n)
        report["per_bin"][str(b)] = {"success_rate": s / n if n else 0.0, "ci95": [blo, bhi], "episodes": n}
    return report
