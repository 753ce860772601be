"""Running policies in the simulated world: one episode, or many in worker processes.

Episode ``i`` of a run with base seed ``S`` uses the seed ``episode_seed(S, i)``; that number alone
fixes the scene, the appearance and the policy's randomness, so any episode can be replayed by
its seed, whatever worker ran it and in whatever order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from rlcg.data.episode import Episode, EpisodeMeta, EpisodeSink, ObjectRecord, Step
from rlcg.errors import RlcgError
from rlcg.interrupts import Interrupted, ctrl_c_deferred
from rlcg.policies import SCRIPTED_POLICIES, ExploringPolicy, Observation, Policy
from rlcg.scratch import adopt_scratch_root, scratch_root
from rlcg.sim.domains import Domain, load_domain
from rlcg.sim.world import GraspAction, ThreeBinWorld


def episode_seed(base_seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run started with ``base_seed`` (a 31-bit integer)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0] >> 1)


def make_policy(
    spec: str, device: str = "cpu", cem: tuple[int, int, int] | None = None, translate_with: str | None = None
) -> Policy:
    """``random``, ``oracle``, ``scripted``, ``default`` (the shipped checkpoint) or a checkpoint path;
    ``cem`` (iterations, population, elites) replaces a learned checkpoint's own CEM settings;
    ``translate_with`` (a GAN run directory) makes a learned policy see each image through its G."""
    if spec in SCRIPTED_POLICIES:
        if translate_with is not None:
            raise ValueError(f"only learned policies see through a generator, not {spec!r}")
        return SCRIPTED_POLICIES[spec]()
    from rlcg.rl.cem import CEMConfig  # torch is imported only when a learned policy is used
    from rlcg.rl.policy import load_policy

    policy = load_policy(spec, device=device, cem=None if cem is None else CEMConfig(*cem))
    if translate_with is None:
        return policy
    from rlcg.gan.translate import translated_policy

    return translated_policy(policy, translate_with)


def run_episode(
    world: ThreeBinWorld, policy: Policy, seed: int, attempts: int = 1, policy_name: str | None = None
) -> Episode:
    """Reset the world with ``seed`` and let ``policy`` grasp until it succeeds, at most ``attempts`` times."""
    image = world.reset(seed)
    scene = world.scene
    assert scene is not None
    meta = EpisodeMeta(
        episode_id=f"{world.domain.name}-{seed:010d}",
        seed=seed,
        domain=world.domain.name,
        policy=policy_name or policy.name,
        bin_index=scene.bin_index,
        bins_mode=world.bins_mode,
        object_split=world.split,
        base_pose=scene.base_pose.as_tuple(),
        camera=world.intrinsics,
        objects=[ObjectRecord(o.object_id, o.bin_index, o.position, o.orientation) for o in scene.objects],
    )
    rng = np.random.default_rng([seed, 1])
    steps = []
    for k in range(attempts):
        decision = policy.act(Observation(image, world.bounds, rng, world))
        outcome = world.execute(GraspAction.from_array(decision.action))
        next_image = world.render()
        # A success ends the episode (as in QT-Opt), so Q stays a probability: r + gamma V <= 1.
        done = outcome.success or k == attempts - 1 or not world.objects_in_front()
        steps.append(
            Step(
                image=image,
                action=np.asarray(decision.action, dtype=np.float64),
                reward=1.0 if outcome.success else 0.0,
                next_image=next_image,
                done=done,
                success=outcome.success,
                lifted_height=outcome.lifted_height,
                q_value=float(decision.q_value),
            )
        )
        image = next_image
        if done:
            break
    return Episode(meta, steps)


@dataclass(frozen=True)
class RolloutSpec:
    """Everything a worker needs to rebuild the world and policy on its own."""

    domain: str | Domain = "sim"
    policy: str = "random"
    bins: str = "single"
    split: str = "train"
    image_size: int | None = None
    attempts: int = 1
    explore: float = 0.0  # epsilon of epsilon-greedy exploration (random grasps), for on-policy data
    device: str = "cpu"
    cem: tuple[int, int, int] | None = None  # a learned policy's CEM (iterations, population, elites); None: its own
    translate_with: str | None = None  # a GAN run whose G a learned policy sees each image through
    base_seed: int = 0
    episodes: int = 1
    seeds: tuple[int, ...] | None = None  # explicit episode seeds instead of base_seed/episodes

    def episode_seeds(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        return [episode_seed(self.base_seed, i) for i in range(self.episodes)]


@dataclass
class RolloutSummary:
    episodes: int = 0
    successes: int = 0
    attempts: int = 0
    per_bin: dict[int, list[int]] = field(default_factory=dict)  # bin -> [successes, episodes]

    def add(self, ep: Episode) -> None:
        self.episodes += 1
        self.attempts += len(ep.steps)
        self.successes += int(ep.success)
        counts = self.per_bin.setdefault(ep.meta.bin_index, [0, 0])
        counts[0] += int(ep.success)
        counts[1] += 1


class RolloutInterrupted(Interrupted):
    """Ctrl-C during a rollout, with the counts of the episodes that finished before it."""

    def __init__(self, summary: RolloutSummary, planned: int):
        super().__init__(f"{summary.episodes} of {planned} episodes finished")
        self.summary = summary
        self.planned = planned


_WORKER: dict = {}


def _init_worker(spec: RolloutSpec, scratch: str | None = None) -> None:
    import torch

    if scratch is not None:
        adopt_scratch_root(scratch)
    torch.set_num_threads(1)  # one worker per core: intra-op threads would only contend
    domain = spec.domain if isinstance(spec.domain, Domain) else load_domain(spec.domain)
    world = ThreeBinWorld(domain=domain, bins=spec.bins, split=spec.split, image_size=spec.image_size)
    world.preload_objects()
    policy = make_policy(spec.policy, spec.device, spec.cem, spec.translate_with)
    if spec.explore > 0:
        policy = ExploringPolicy(policy, spec.explore)
    _WORKER.update(world=world, policy=policy, spec=spec)


def _init_pool_worker(spec: RolloutSpec, scratch: str) -> None:
    """A pool worker's set-up. An error is kept and raised by the worker's first episode, which
    reaches the caller: raised here, it would make the pool start replacement workers forever."""
    _leave_ctrl_c_to_parent()
    try:
        _init_worker(spec, scratch)
    except Exception as exc:  # noqa: BLE001 - any set-up error: a bad config, a missing checkpoint
        error = exc if isinstance(exc, RlcgError) else RlcgError(f"{type(exc).__name__}: {exc}")
        _WORKER["error"] = RlcgError(f"a worker process could not start: {error}")


def _leave_ctrl_c_to_parent() -> None:
    """Ctrl-C reaches every process of the terminal's group. The parent stops the pool and keeps
    the finished episodes; a worker interrupted in an import would only print a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_seed(seed: int) -> Episode:
    if "error" in _WORKER:
        raise _WORKER["error"]
    spec: RolloutSpec = _WORKER["spec"]
    label = _policy_label(spec.policy) + (f"+explore{spec.explore:g}" if spec.explore > 0 else "")
    if spec.cem is not None:
        label += "+cem{}-{}-{}".format(*spec.cem)
    if spec.translate_with is not None:
        label += f"+G({spec.translate_with})"
    return run_episode(_WORKER["world"], _WORKER["policy"], seed, spec.attempts, label)


def _ready(_: object) -> int:
    """A pool worker's pid, once its set-up is done (tasks run only after the initializer)."""
    if "error" in _WORKER:
        raise _WORKER["error"]
    time.sleep(0.01)  # leave tasks for a worker that is still starting
    return os.getpid()


def _policy_label(spec: str) -> str:
    return spec if spec in SCRIPTED_POLICIES or spec == "default" else f"checkpoint:{spec}"


class EpisodeRunner:
    """Runs episodes of one ``RolloutSpec`` in this process (1 worker) or in a process pool."""

    def __init__(self, spec: RolloutSpec, workers: int = 1):
        self.spec = spec
        self.workers = workers
        self._pool = None
        self._threads: int | None = None

    def __enter__(self) -> EpisodeRunner:
        if self.workers <= 1:
            import torch

            self._threads = torch.get_num_threads()  # the worker set-up takes one; the caller gets its own back
            _init_worker(self.spec)
        else:
            ctx = mp.get_context("spawn")  # no inherited PyBullet clients or torch thread pools
            # the workers write beneath this process's scratch root, which is removed when it exits
            scratch = str(scratch_root())
            # an ignored SIGINT survives exec: a worker ignores Ctrl-C from its first instruction on
            in_main_thread = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
            try:
                self._pool = ctx.Pool(self.workers, initializer=_init_pool_worker, initargs=(self.spec, scratch))
            finally:
                if in_main_thread:
                    signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        return self

    def wait_ready(self) -> set[int]:
        """Return once every worker has finished its set-up (imports, world, policy), with their pids:
        a benchmark's clock must not include a worker that is still starting."""
        if self._pool is None:
            return {os.getpid()}
        seen: set[int] = set()
        while len(seen) < self.workers:
            seen |= set(self._pool.map(_ready, range(4 * self.workers), chunksize=1))
        return seen

    def run(self, seeds: list[int], ordered: bool = True) -> Iterator[Episode]:
        """Episodes of ``seeds``; in seed order unless ``ordered`` is False."""
        if self._pool is None:
            for seed in seeds:
                yield _run_seed(seed)
        elif ordered:
            yield from self._pool.imap(_run_seed, seeds, chunksize=1)
        else:
            yield from self._pool.imap_unordered(_run_seed, seeds, chunksize=1)

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            return
        if "world" in _WORKER:
            _WORKER.pop("world").close()
        if self._threads is not None:
            import torch

            torch.set_num_threads(self._threads)


def iter_episodes(spec: RolloutSpec, workers: int = 1) -> Iterator[Episode]:
    """Episodes of ``spec`` in seed order, computed by ``workers`` processes."""
    # no more processes than episodes: each worker starts a simulator of its own
    with EpisodeRunner(spec, max(1, min(workers, len(spec.episode_seeds())))) as runner:
        yield from runner.run(spec.episode_seeds())


def rollout(
    spec: RolloutSpec, sink: EpisodeSink | None = None, workers: int = 1, progress: bool = True, desc: str = ""
) -> RolloutSummary:
    """Run ``spec``'s episodes, write them to ``sink`` in seed order, and count successes."""
    from tqdm import tqdm

    summary = RolloutSummary()
    bar = tqdm(
        total=len(spec.episode_seeds()), desc=desc or "episodes", unit="ep", disable=not progress, dynamic_ncols=True
    )
    try:
        for ep in iter_episodes(spec, workers):
            with ctrl_c_deferred():  # an episode is in the sink and the counts whole, or not at all
                if sink is not None:
                    sink.write(ep)
                summary.add(ep)
            bar.update(1)
            bar.set_postfix(success=f"{summary.successes / summary.episodes:.2f}")
    except KeyboardInterrupt:
        raise RolloutInterrupted(summary, len(spec.episode_seeds())) from None
    finally:
        bar.close()
    return summary
