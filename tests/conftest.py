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


@pytest.fixture
def fit_with_ctrl_c_during_step():
    """``run(trainer, at)``: the trainer's fit, with Ctrl-C arriving at the start of step ``at``; returns
    what fit raised (pytest.raises catches any KeyboardInterrupt: a wrong one must fail the test, not stop pytest)."""
    import signal

    def run(trainer, at: int) -> BaseException:
        take_step = trainer.train_step

        def step_during_which_ctrl_c_comes():
            if trainer.step == at:
                signal.raise_signal(signal.SIGINT)
            return take_step()

        trainer.train_step = step_during_which_ctrl_c_comes
        with pytest.raises(KeyboardInterrupt) as caught:
            trainer.fit(progress=False)
        return caught.value

    return run
