"""Q-network, CEM, TD targets, checkpoints, resume, and a training run that must learn."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlcg.errors import RlcgError
from rlcg.models.qnet import QNetConfig, QNetwork, as_image_tensor
from rlcg.rl.cem import CEMConfig, cem_maximize
from rlcg.rl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlcg.rl.policy import LearnedPolicy, load_policy, policy_config, save_policy
from rlcg.rl.qtopt import QTOptTrainer, QTrainConfig, WeightedSources, learning_rate, td_loss, td_targets
from rlcg.sim.config import WorkspaceBounds

BOUNDS = WorkspaceBounds()


# ---------------------------------------------------------------------- CEM
def test_cem_finds_the_maximum_of_a_known_function():
    peak = torch.tensor([0.66, -0.05, 1.45])  # yaw near the +pi/2 end: the search must wrap around

    def score(actions):
        yaw_err = torch.remainder(actions[..., 2] - peak[2] + math.pi / 2, math.pi) - math.pi / 2
        return -((actions[..., 0] - peak[0]) ** 2 + (actions[..., 1] - peak[1]) ** 2) * 100 - yaw_err**2

    best, value = cem_maximize(
        score, 3, BOUNDS, CEMConfig(iterations=5, population=128, elites=8), torch.Generator().manual_seed(0)
    )
    assert best.shape == (3, 4)
    assert torch.allclose(best[:, :2], peak[:2].expand(3, 2), atol=0.01)
    yaw_err = torch.remainder(best[:, 2] - peak[2] + math.pi / 2, math.pi) - math.pi / 2
    assert yaw_err.abs().max() < 0.1
    assert torch.all(value <= 0) and torch.all(value > -0.02)


def test_cem_samples_stay_inside_the_workspace():
    seen = []

    def score(actions):
        seen.append(actions.clone())
        return actions[..., 0] * 10 + actions[..., 1] * 10  # pushes towards the high corner

    cem_maximize(
        score, 4, BOUNDS, CEMConfig(iterations=4, population=64, elites=6), torch.Generator().manual_seed(1), use_z=True
    )
    allsamples = torch.cat([s.reshape(-1, 4) for s in seen])
    low, high = torch.tensor(BOUNDS.low, dtype=torch.float32), torch.tensor(BOUNDS.high, dtype=torch.float32)
    assert torch.all(allsamples >= low - 1e-6) and torch.all(allsamples <= high + 1e-6)


def test_cem_config_is_validated():
    with pytest.raises(ValueError, match="elites"):
        CEMConfig(population=4, elites=6).validate()


# ---------------------------------------------------------------------- network
def test_encode_once_head_matches_full_forward():
    torch.manual_seed(0)
    net = QNetwork(QNetConfig()).eval()
    images = as_image_tensor(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))
    actions = torch.rand(2, 5, 4) * 0.1 + torch.tensor([0.55, -0.05, 0.0, 0.0])
    with torch.no_grad():
        fast = net.head(net.encode(images), actions)
        slow = torch.stack([net(images, actions[:, k]) for k in range(5)], dim=1)
    assert torch.allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize("size", [64, 128, 472])
def test_network_sizes(size):
    net = QNetwork(QNetConfig(image_size=size))
    out = net(as_image_tensor(np.zeros((3, size, size, 3), np.uint8)), torch.zeros(3, 4))
    assert out.shape == (3,)


# ---------------------------------------------------------------------- TD targets
class ConstantQ(QNetwork):
    """A Q-network whose every logit is ``value`` (for hand-checked targets)."""

    def __init__(self, value: float):
        super().__init__(QNetConfig(image_size=32))
        self.value = value

    def encode(self, images):
        return torch.zeros(images.shape[0], 1, 1, 1)

    def head(self, features, actions):
        return torch.full(actions.shape[:2], self.value)

    def forward(self, images, actions):
        return torch.full((images.shape[0],), self.value)


def test_td_targets_on_a_hand_made_batch():
    reward = torch.tensor([1.0, 0.0, 0.0, 1.0])
    done = torch.tensor([True, True, False, False])
    nxt = torch.zeros(4, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    y = td_targets(reward, done, nxt, ConstantQ(0.0), 0.9, CEMConfig(), gen)
    # terminal: y = r; live: y = r + gamma * sigmoid(0) = r + 0.45, clamped to 1
    assert torch.allclose(y, torch.tensor([1.0, 0.0, 0.45, 1.0]))
    y2 = td_targets(reward, done, nxt, ConstantQ(2.0), 0.9, CEMConfig(), gen, lagged=ConstantQ(-1.0))
    assert torch.allclose(y2[2], torch.tensor(0.9 / (1 + math.e)))  # clipped double Q takes the smaller


def test_td_losses():
    logits = torch.tensor([0.0, 10.0])
    y = torch.tensor([0.5, 1.0])
    assert td_loss(logits, y, "mse") == pytest.approx(0.0, abs=1e-6)
    assert td_loss(logits, y, "bce") > 0.3  # cross-entropy of p=0.5 against 0.5 is log 2 / 2
    with pytest.raises(ValueError):
        td_loss(logits, y, "huber")


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = QNetwork(QNetConfig())
    save_policy(tmp_path / "ckpt", net, CEMConfig(iterations=3, population=32, elites=4))
    policy = load_policy(tmp_path / "ckpt")
    assert policy.cem == CEMConfig(iterations=3, population=32, elites=4)
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    acts = np.array([[0.6, 0.0, 0.1, 0.0], [0.5, 0.1, -1.0, 0.0]])
    with torch.no_grad():
        expected = torch.sigmoid(
            net.eval()(as_image_tensor(img).expand(2, -1, -1, -1), torch.tensor(acts, dtype=torch.float32))
        )
    assert np.allclose(policy.q_values(img, acts), expected.numpy(), atol=1e-6)
    # saving again replaces the weights atomically; the previous save's stay until the next one
    ckpt = tmp_path / "ckpt"
    first = set(ckpt.glob("*.safetensors"))
    save_policy(ckpt, net, CEMConfig())
    second = set(ckpt.glob("*.safetensors"))
    assert len(first) == 1 and first < second and len(second) == 2
    save_policy(ckpt, net, CEMConfig())
    assert len(set(ckpt.glob("*.safetensors"))) == 2 and not first & set(ckpt.glob("*.safetensors"))


def test_saving_keeps_what_a_reader_needs_and_deletes_only_its_own_files(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "my_other_model.safetensors").write_bytes(b"a user's file")
    (ckpt / ".model-killed.safetensors.tmp").write_bytes(b"left by a save that was killed")
    save_checkpoint(ckpt, "q-policy", {"step": 1}, {"w": torch.zeros(1)})
    read_by_a_reader = json.loads((ckpt / "config.json").read_text())["files"]["weights"]
    # a save killed after its weights were in place but before config.json named them
    real_replace = os.replace

    def killed_at_config(src, dst):
        if str(dst).endswith("config.json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_config)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, "q-policy", {"step": 99}, {"w": torch.full((1,), 99.0)})
    monkeypatch.setattr(os, "replace", real_replace)
    (orphan,) = {p.name for p in ckpt.glob("model-*.safetensors")} - {read_by_a_reader}
    save_checkpoint(ckpt, "q-policy", {"step": 2}, {"w": torch.ones(1)})
    # a reader that parsed config.json before this save still finds the weights it names
    assert torch.equal(load_file(str(ckpt / read_by_a_reader))["w"], torch.zeros(1))
    for step in (3, 4):
        save_checkpoint(ckpt, "q-policy", {"step": step}, {"w": torch.full((1,), float(step))})
    config, weights, _ = load_checkpoint(ckpt)
    assert config == {"step": 4} and torch.equal(weights["w"], torch.full((1,), 4.0))
    names = {p.name for p in ckpt.iterdir()}
    assert "my_other_model.safetensors" in names and read_by_a_reader not in names and orphan not in names
    assert not any(n.endswith(".tmp") for n in names) and len([n for n in names if n.startswith("model-")]) == 2


@pytest.mark.parametrize(
    "config_json",
    [
        b"[]",
        b"\xff\xfe not text",
        b'{"format": "rlcg-checkpoint", "version": 1, "kind": "q-policy"}',
        b'{"format": "rlcg-checkpoint", "version": 1, "kind": "q-policy", "config": {}, "files": ["w"]}',
        b'{"format": "rlcg-checkpoint", "version": 1, "kind": "q-policy", "config": 3, "files": {"weights": "w"}}',
    ],
)
def test_a_damaged_config_json_is_a_checkpoint_error(tmp_path, config_json):
    ckpt = save_checkpoint(tmp_path / "c", "q-policy", {"qnet": {}}, {"w": torch.zeros(1)})
    (ckpt / "config.json").write_bytes(config_json)
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError):
        load_policy(ckpt)


def test_pickles_and_broken_checkpoints_are_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_policy(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_policy(tmp_path / "empty")
    ckpt = save_checkpoint(tmp_path / "c", "q-policy", {"qnet": {}}, {"w": torch.zeros(1)})
    weights = next(ckpt.glob("*.safetensors"))
    weights.write_bytes(b"\x80\x04not a safetensors file")  # e.g. a pickle renamed
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(ckpt)
    other = save_checkpoint(tmp_path / "g", "rl-cyclegan", {}, {"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="expected 'q-policy'"):
        load_policy(other)


def test_a_bit_flipped_in_saved_weights_is_found_by_the_recorded_sha256(tmp_path):
    """safetensors keeps no checksum: a flipped bit in a weight parses as a changed weight. The
    SHA-256 that config.json records is what finds it, in the weights and in the training state."""
    from safetensors.torch import load as parse_safetensors

    net = QNetwork(QNetConfig())
    state = {"step": 3, "moments": torch.arange(64.0)}
    ckpt = save_checkpoint(tmp_path / "c", "q-policy", policy_config(net, CEMConfig()), net.state_dict(), state)
    meta = json.loads((ckpt / "config.json").read_text())
    assert set(meta["sha256"]) == set(meta["files"].values())
    for role in ("weights", "train_state"):
        file = ckpt / meta["files"][role]
        good = file.read_bytes()
        data = bytearray(good)
        data[len(data) - 5] ^= 0x10  # inside the last tensor's bytes, past the header
        file.write_bytes(bytes(data))
        assert parse_safetensors(bytes(data)).keys() == parse_safetensors(good).keys()  # parses "fine"
        with pytest.raises(CheckpointError, match="SHA-256"):
            load_checkpoint(ckpt, with_train_state=True)
        if role == "weights":
            with pytest.raises(CheckpointError, match="SHA-256"):
                load_policy(ckpt)
        file.write_bytes(good)
    _, weights, loaded = load_checkpoint(ckpt, with_train_state=True)
    assert loaded["step"] == 3 and torch.equal(loaded["moments"], state["moments"])
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    del meta["sha256"]  # saved before the hashes were recorded: loads unchecked
    (ckpt / "config.json").write_text(json.dumps(meta))
    load_policy(ckpt)


def test_the_shipped_default_policy_records_its_weights_sha256():
    from rlcg.rl.checkpoint import read_checkpoint_meta
    from rlcg.rl.policy import default_policy_path

    path, meta = read_checkpoint_meta(default_policy_path())
    weights = path / meta["files"]["weights"]
    assert meta["sha256"] == {weights.name: hashlib.sha256(weights.read_bytes()).hexdigest()}


def test_weights_that_lack_a_tensor_of_the_network_are_refused(tmp_path):
    """A weights file without one of the network's tensors must not load with that layer left at
    its random initial values."""
    net = QNetwork(QNetConfig())
    save_policy(tmp_path / "ckpt", net, CEMConfig())
    config, weights, _ = load_checkpoint(tmp_path / "ckpt")
    missing = sorted(weights)[-1]
    del weights[missing]
    save_checkpoint(tmp_path / "partial", "q-policy", config, weights)
    with pytest.raises(CheckpointError, match="weights do not match the network"):
        load_policy(tmp_path / "partial")


@pytest.mark.parametrize("name", ["../outside.safetensors", "notes.txt", "sub/model.safetensors"])
def test_a_damaged_config_json_never_makes_a_save_delete_what_it_does_not_own(tmp_path, name):
    """previous_files of a hand-edited or damaged config.json may name anything: a save deletes
    only plain *.safetensors names inside the checkpoint directory."""
    ckpt = save_checkpoint(tmp_path / "c", "q-policy", {}, {"w": torch.zeros(1)})
    victim = ckpt / name
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("not the checkpoint's")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["previous_files"] = [name]
    (ckpt / "config.json").write_text(json.dumps(meta))
    save_checkpoint(ckpt, "q-policy", {}, {"w": torch.ones(1)})
    save_checkpoint(ckpt, "q-policy", {}, {"w": torch.ones(1)})
    assert victim.read_text() == "not the checkpoint's"


# ---------------------------------------------------------------------- training
class SideOfTheSquare:
    """Images with a bright square in the left or right half; a grasp succeeds iff its y lies on
    the square's side. Trivially learnable from the image, impossible without it."""

    def __init__(self, n: int = 512, size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.side = rng.integers(0, 2, n)
        self.images = np.zeros((n, size, size, 3), np.uint8)
        for i, s in enumerate(self.side):
            c = rng.integers(2, size // 2 - 8) + s * size // 2
            r = rng.integers(2, size - 8)
            self.images[i, r : r + 6, c : c + 6] = 255

    def __len__(self) -> int:
        return len(self.side)

    def sample(self, b: int, rng: np.random.Generator):
        idx = rng.integers(0, len(self), b)
        action = np.column_stack(
            [rng.uniform(*BOUNDS.x, b), rng.uniform(*BOUNDS.y, b), rng.uniform(*BOUNDS.yaw, b), np.zeros(b)]
        ).astype(np.float32)
        # a fixed rule tying the square's side to the sign of the grasp's y
        reward = ((action[:, 1] < 0) == (self.side[idx] == 1)).astype(np.float32)
        return SimpleNamespace(
            image=self.images[idx], next_image=self.images[idx], action=action, reward=reward, done=np.ones(b, bool)
        )


def _trainer(tmp_path, steps, resume=False, seed=0, init=None, channels=(16, 32), lr_schedule="constant", device="cpu"):
    cfg = QTrainConfig(
        steps=steps, batch_size=32, lr=5e-4, lr_schedule=lr_schedule, seed=seed, log_every=10, checkpoint_every=10_000
    )
    # QT-Opt's broadcast-add fusion: no camera geometry is involved in this synthetic task.
    qcfg = QNetConfig(image_size=32, channels=channels, merge_size=8, fusion="add")
    data = WeightedSources([(SideOfTheSquare(), 1)])
    return QTOptTrainer(cfg, qcfg, data, tmp_path / "run", device=device, resume=resume, init=init)


def test_training_learns_a_learnable_task(tmp_path):
    torch.set_num_threads(2)
    trainer = _trainer(tmp_path, 300)
    history = trainer.fit(progress=False)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["accuracy"] > 0.9 and first["accuracy"] < 0.75


def test_learning_rate_schedules():
    constant = QTrainConfig(steps=100, lr=1e-3)
    assert {learning_rate(constant, s) for s in (0, 50, 99)} == {1e-3}
    cosine = QTrainConfig(steps=100, lr=1e-3, lr_schedule="cosine", final_lr_fraction=0.05)
    rates = [learning_rate(cosine, s) for s in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[100] == pytest.approx(5e-5)
    assert rates[50] == pytest.approx(0.5 * (1e-3 + 5e-5))
    assert all(a > b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="schedule"):
        QTrainConfig(lr_schedule="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="final_lr_fraction"):
        QTrainConfig(final_lr_fraction=1.5)


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_resume_continues_a_killed_run(tmp_path, lr_schedule):
    straight = _trainer(tmp_path / "a", 40, lr_schedule=lr_schedule)
    straight.fit(progress=False)
    final_lr = straight.opt.param_groups[0]["lr"]
    assert final_lr == pytest.approx(learning_rate(straight.config, 39))
    assert (final_lr < 1e-4) if lr_schedule == "cosine" else (final_lr == 5e-4)
    part = _trainer(tmp_path / "b", 40, lr_schedule=lr_schedule)
    for _ in range(20):
        part.train_step()
    part.save()  # a checkpoint at step 20, as if killed right after
    resumed = _trainer(tmp_path / "b", 40, resume=True, lr_schedule=lr_schedule)
    assert resumed.step == 20
    resumed.fit(progress=False)
    for p, q in zip(straight.qnet.parameters(), resumed.qnet.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    other = "constant" if lr_schedule == "cosine" else "cosine"
    with pytest.raises(RlcgError, match="lr_schedule"):  # a resumed run keeps its schedule
        _trainer(tmp_path / "b", 40, resume=True, lr_schedule=other)
    with pytest.raises(RlcgError, match="seed=0"):  # and the rest of its settings
        _trainer(tmp_path / "b", 40, resume=True, seed=3, lr_schedule=lr_schedule)


def test_resume_refuses_an_objective_change_and_a_checkpoint_without_training_state(tmp_path):
    part = _trainer(tmp_path, 10)
    part.train_step()
    part.save()
    cfg = dataclasses.replace(part.config, gamma=0.1, clipped_double_q=True)
    with pytest.raises(RlcgError, match="gamma=0.9, clipped_double_q=False"):
        QTOptTrainer(cfg, part.qnet.config, part.data, tmp_path / "run", resume=True)
    exported = tmp_path / "exported"
    save_policy(exported, part.qnet, CEMConfig())  # weights only, as `rlcg export-q` writes
    before = (exported / "config.json").read_bytes()
    with pytest.raises(RlcgError, match="no training state"):
        QTOptTrainer(part.config, part.qnet.config, part.data, exported, resume=True)
    assert (exported / "config.json").read_bytes() == before  # left as it was


def test_init_warm_starts_a_fresh_run_from_a_policy(tmp_path):
    first = _trainer(tmp_path / "a", 300)
    first.fit(progress=False)
    warm = _trainer(tmp_path / "b", 10, seed=1, init=tmp_path / "a" / "run")
    assert warm.step == 0
    for p, q, t in zip(first.qnet.parameters(), warm.qnet.parameters(), warm.target.parameters()):
        assert torch.equal(p, q) and torch.equal(p, t)
    cold = _trainer(tmp_path / "c", 10, seed=1)
    # a warm start already knows the task that a cold one must still learn
    batch = SideOfTheSquare(seed=1).sample(256, np.random.default_rng(2))

    def accuracy(trainer):
        with torch.no_grad():
            image = QNetwork.preprocess(torch.as_tensor(batch.image))
            logits = trainer.qnet(image, torch.from_numpy(batch.action))
        return float(((logits > 0).float().numpy() == batch.reward).mean())

    assert accuracy(warm) > accuracy(cold) + 0.2
    with pytest.raises(RlcgError, match="network differs"):
        _trainer(tmp_path / "d", 10, init=tmp_path / "a" / "run", channels=(8, 16))


def test_learned_policy_decisions_are_deterministic_per_seed():
    from rlcg.policies import Observation

    torch.manual_seed(3)
    policy = LearnedPolicy(QNetwork(QNetConfig()))
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = policy.act(Observation(img, BOUNDS, np.random.default_rng(5)))
    b = policy.act(Observation(img, BOUNDS, np.random.default_rng(5)))
    assert np.array_equal(a.action, b.action) and a.q_value == b.q_value
    assert np.all(a.action >= BOUNDS.low) and np.all(a.action <= BOUNDS.high)
    with pytest.raises(ValueError, match="64x64"):
        policy.act(Observation(np.zeros((32, 32, 3), np.uint8), BOUNDS, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="uint8"):
        policy.act(Observation(np.zeros((64, 64, 3), np.float32), BOUNDS, np.random.default_rng(0)))


def test_attention_prior_looks_where_the_grasp_projects(sim_config):
    """The prior of the default Q-network peaks at the feature cell that holds the grasp point's
    image projection under the nominal camera (config/camera.yaml)."""
    from rlcg.sim.camera import TablePlaneProjector

    cfg = QNetConfig.for_world(sim_config)
    net = QNetwork(cfg)
    proj = TablePlaneProjector(sim_config.camera)
    grasps = torch.tensor([[[0.50, 0.10, 0.0, 0.0], [0.70, -0.10, 1.0, 0.0], [0.60, 0.0, -1.0, 0.0]]])
    cells = net.attention_prior(grasps)[0].argmax(-1)
    m = cfg.merge_size
    for grasp, cell in zip(grasps[0], cells):
        u, v = proj.project(np.array([[grasp[0].item(), grasp[1].item(), cfg.prior_height]]))[0]
        assert (int(cell) // m, int(cell) % m) == (int(v * m / 64), int(u * m / 64))
    # the learned correction starts at zero: the initial attention is the prior itself
    a = torch.zeros(1, 1, cfg.action_features)
    assert torch.count_nonzero(net.where(a)) == 0


def test_make_default_policy_outside_sim_never_replaces_the_shipped_checkpoint(tmp_path):
    """scripts/make_default_policy.sh runs its recipe in any domain; a policy made outside sim must
    name its own export directory, and the refusal comes before any work (nothing is created)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    shipped = repo / "src/rlcg/rlcg/assets/default_policy"  # the script's path, whatever the install
    before = {p.name: p.read_bytes() for p in shipped.iterdir() if p.is_file()}
    for asset in (None, str(shipped)):
        env = {**os.environ, "DOMAIN": "pseudo-real"}
        env.pop("ASSET", None)
        if asset:
            env["ASSET"] = asset
        work = tmp_path / "work"
        proc = subprocess.run(
            ["bash", str(repo / "scripts/make_default_policy.sh"), str(work)],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "would replace the shipped sim policy" in proc.stderr
        assert not work.exists()
    assert {p.name: p.read_bytes() for p in shipped.iterdir() if p.is_file()} == before


def test_shipped_default_policy_is_small_and_grasps():
    """The checkpoint `rlcg sim` runs out of the box: under 5 MB, loads, and grasps held-out objects
    far more often than the random policy (about 21%) on fixed evaluation scenes."""
    from rlcg.rl.policy import default_policy_path
    from rlcg.rollout import RolloutSpec, rollout

    files = [p for p in default_policy_path().iterdir() if p.is_file()]
    assert "config.json" in {p.name for p in files} and any(p.suffix == ".safetensors" for p in files)
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    assert load_policy("default").name == "default"
    spec = RolloutSpec(domain="sim", policy="default", split="test", base_seed=1000, episodes=12)
    summary = rollout(spec, None, workers=1, progress=False)
    assert summary.successes >= 8, f"{summary.successes}/12"


# ---------------------------------------------------------------------- diverged training (CLI audit)
def test_a_diverging_training_stops_and_saves_nothing_past_its_last_checkpoint(tmp_path):
    """At --lr 1e30 the loss turns NaN within steps. Before the fix the run went on and saved a
    policy of NaN weights, which CEM turned into one fixed grasp in the workspace corner."""
    from rlcg.rl.qtopt import TrainingDiverged

    cfg = QTrainConfig(steps=50, batch_size=32, lr=1e30, seed=0, log_every=10, checkpoint_every=10_000)
    qcfg = QNetConfig(image_size=32, channels=(16, 32), merge_size=8, fusion="add")
    trainer = QTOptTrainer(cfg, qcfg, WeightedSources([(SideOfTheSquare(), 1)]), tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="training diverged at step"):
        trainer.fit(progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_nan_rewards_or_actions_in_the_data_are_refused_before_training():
    from rlcg.rl.qtopt import TrainingDiverged

    for column in ("rewards", "actions"):
        source = SideOfTheSquare()
        source.rewards, source.actions = np.ones(4, np.float32), np.zeros((4, 4), np.float32)
        getattr(source, column)[1] = np.nan
        with pytest.raises(TrainingDiverged, match=f"{column} hold NaN"):
            WeightedSources([(source, 1)])


def test_non_finite_weights_and_q_values_never_become_a_grasp(tmp_path):
    """A checkpoint holding NaN weights is refused on load; a Q that is NaN for an image (a NaN
    image, a network that overflows) chooses no grasp instead of CEM's fallback corner."""
    net = QNetwork(QNetConfig())
    with torch.no_grad():
        next(iter(net.parameters()))[0] = float("nan")
    save_policy(tmp_path / "nan", net, CEMConfig())
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_policy(tmp_path / "nan")
    from rlcg.policies import Observation

    policy = LearnedPolicy(net, CEMConfig())
    image = np.zeros((net.config.image_size,) * 2 + (3,), np.uint8)
    with pytest.raises(RlcgError, match="no grasp is chosen"):
        policy.act(Observation(image, BOUNDS, np.random.default_rng(0)))


@pytest.mark.parametrize(
    "cem, match",
    [({"elites": 100}, "elites"), ({"population": 0}, "CEM needs"), ({"min_std_fraction": -1.0}, "min_std_fraction")],
)
def test_a_checkpoint_with_a_bad_cem_block_is_a_checkpoint_error(tmp_path, cem, match):
    save_policy(tmp_path / "c", QNetwork(QNetConfig()), CEMConfig())
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    meta["config"]["cem"].update(cem)
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match):
        load_policy(tmp_path / "c")


def test_a_users_weights_file_is_never_deleted_whatever_its_name(tmp_path):
    """Only files a save listed as its own (.save-<tag>.pending) are taken for a killed save's
    orphans: a model file the user copied in, before or between saves, stays."""
    out = tmp_path / "out"
    out.mkdir()
    before = out / "model-20261126-221414-64a7600d.safetensors"
    before.write_bytes(b"the user's")
    save_checkpoint(out, "q-policy", {}, {"w": torch.zeros(1)})
    between = out / "model-20261127-101010-0123abcd.safetensors"
    between.write_bytes(b"also the user's")
    for _ in range(3):
        save_checkpoint(out, "q-policy", {}, {"w": torch.ones(1)})
    assert before.read_bytes() == b"the user's" and between.read_bytes() == b"also the user's"
    assert not list(out.glob(".save-*"))


@pytest.mark.parametrize("field, value", [("sha256", "x"), ("files", {"weights": "../other/model.safetensors"})])
def test_a_config_json_with_a_bad_hash_table_or_a_path_outside_is_damaged(tmp_path, field, value):
    ckpt = save_checkpoint(tmp_path / "c", "q-policy", {}, {"w": torch.zeros(1)})
    meta = json.loads((ckpt / "config.json").read_text())
    meta[field] = value
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(ckpt)


def test_ctrl_c_mid_step_finishes_the_step_saves_it_and_the_run_resumes_exactly(tmp_path, fit_with_ctrl_c_during_step):
    from rlcg.interrupts import Interrupted

    straight = _trainer(tmp_path / "a", 12)
    straight.fit(progress=False)
    interrupted = fit_with_ctrl_c_during_step(_trainer(tmp_path / "b", 12), at=5)
    assert isinstance(interrupted, Interrupted)
    assert str(interrupted) == f"step 6 of 12 saved in {tmp_path / 'b' / 'run'}"  # the step under way was finished
    resumed = _trainer(tmp_path / "b", 12, resume=True)
    assert resumed.step == 6
    resumed.fit(progress=False)
    for p, q in zip(straight.qnet.parameters(), resumed.qnet.parameters()):
        assert torch.equal(p, q)
