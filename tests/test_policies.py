"""Scripted policies in the real world: success rates on fixed seeds (larger samples by command, see
docs/results.md): oracle near-perfect, scripted with both outcomes, random rarely successful."""

from __future__ import annotations

import numpy as np
import pytest

from rlcg.data.episode import MemorySink
from rlcg.policies import OraclePolicy, RandomPolicy, ScriptedPolicy, clip_to_bounds
from rlcg.rollout import RolloutSpec, rollout
from rlcg.sim.config import WorkspaceBounds


def success_rate(policy: str, episodes: int, seed: int) -> float:
    summary = rollout(RolloutSpec(policy=policy, base_seed=seed, episodes=episodes), progress=False)
    return summary.successes / summary.episodes


@pytest.mark.slow
def test_oracle_grasps_almost_always():
    assert success_rate("oracle", 40, seed=100) >= 0.85


@pytest.mark.slow
def test_scripted_gives_both_outcomes():
    assert 0.40 <= success_rate("scripted", 60, seed=200) <= 0.70


@pytest.mark.slow
def test_random_rarely_succeeds():
    assert 0.0 < success_rate("random", 80, seed=300) <= 0.35


def test_random_policy_stays_in_bounds():
    from rlcg.policies import Observation

    bounds = WorkspaceBounds()
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = RandomPolicy().act(Observation(np.zeros((64, 64, 3), np.uint8), bounds, rng)).action
        assert np.all(a >= bounds.low) and np.all(a <= bounds.high)


def test_clip_wraps_yaw_into_the_half_turn():
    b = WorkspaceBounds()
    a = clip_to_bounds(np.array([9.0, -9.0, np.pi * 0.75, 0.0]), b)
    assert a[0] == b.x[1] and a[1] == b.y[0]
    assert a[2] == pytest.approx(-np.pi / 4)


@pytest.mark.parametrize("yaw_bounds", [(1.0, 2.5), (0.0, np.pi), (-3.0, -2.0)])
def test_clip_keeps_an_allowed_yaw_whatever_half_turn_the_bounds_cover(yaw_bounds):
    b = WorkspaceBounds(yaw=yaw_bounds)
    lo, hi = yaw_bounds
    for yaw in np.linspace(lo, hi, 7)[:-1]:
        for turns in (-1, 0, 1):  # the same grasp turned by pi
            assert clip_to_bounds(np.array([0.6, 0.0, yaw + turns * np.pi, 0.0]), b)[2] == pytest.approx(yaw)
    if hi - lo < np.pi - 0.1:  # a yaw just past the upper bound, and not allowed turned by pi either
        assert clip_to_bounds(np.array([0.6, 0.0, hi + 0.1, 0.0]), b)[2] == pytest.approx(hi)


def test_episodes_record_what_happened():
    sink = MemorySink()
    rollout(RolloutSpec(policy="scripted", base_seed=5, episodes=3, attempts=2), sink, progress=False)
    assert len(sink.episodes) == 3
    for ep in sink.episodes:
        assert ep.meta.policy == "scripted" and ep.meta.domain == "sim" and ep.meta.camera is not None
        assert 1 <= len(ep.steps) <= 2
        assert ep.steps[-1].done and all(not s.done for s in ep.steps[:-1])
        for step in ep.steps:
            assert step.image.shape == step.next_image.shape == (64, 64, 3)
            assert step.reward == float(step.success)
        # an episode ends at its first success
        assert all(not s.success for s in ep.steps[:-1])
    with pytest.raises(ValueError, match="ground truth"):
        from rlcg.policies import Observation

        OraclePolicy().act(Observation(np.zeros((64, 64, 3), np.uint8), WorkspaceBounds(), np.random.default_rng()))
    assert ScriptedPolicy().name == "scripted"
