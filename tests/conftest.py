"""Shared fixtures. Tests use the real simulator, real bag files and real parsers."""

from __future__ import annotations

import pytest

from rlcg.sim.config import SimConfig


@pytest.fixture(scope="session")
def sim_config() -> SimConfig:
    return SimConfig.load()


@pytest.fixture(scope="session")
def sim_world():
    """One world for tests that only need to reset and render (shared: building costs ~0.1 s)."""
    from rlcg.sim.world import ThreeBinWorld

    world = ThreeBinWorld(domain="sim", bins="single")
    yield world
    world.close()
