"""The ingested dataset: memory-mapped shards, the TransitionDataset API (columns, split, batches,
sample), appending, and reading bags directly through the same API."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from data_helpers import real_episodes, transitions_of, write_bag

from rlcg.data.dataset import Batch, TransitionDataset
from rlcg.data.ingest import DatasetExistsError, ingest
from rlcg.data.store import DatasetError


@pytest.fixture(scope="module")
def eps():
    return real_episodes(6, attempts=2, base_seed=3)


@pytest.fixture(scope="module")
def bags(tmp_path_factory, eps):
    root = tmp_path_factory.mktemp("bags")
    write_bag(root / "a", eps[:4])
    write_bag(root / "b", eps[4:])
    return root


@pytest.fixture(scope="module")
def ds(tmp_path_factory, bags):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    # A tiny shard size: several shards, so every read crosses shard borders.
    ingest([bags], out, progress=False, shard_bytes=40_000)
    return TransitionDataset.open(out)


def test_columns_hold_the_transitions(ds, eps):
    want = transitions_of(eps)
    n = len(want["rewards"])
    assert len(ds) == n and ds.image_size == (64, 64)
    assert len(ds.images.parts) > 2  # several shards ...
    assert all(isinstance(p, np.memmap) for p in ds.images.parts)  # ... each memory-mapped
    for name, value in want.items():
        col = getattr(ds, name)
        assert col.shape == value.shape and col.dtype == value.dtype
        assert np.array_equal(np.asarray(col), value)
    episode_of = [ep.meta.episode_id for ep in eps for _ in ep.steps]
    assert list(ds.episode_ids) == episode_of
    assert list(ds.domains) == ["sim"] * n and ds.domain_names == ["sim"]
    assert list(ds.step_index) == [k for ep in eps for k in range(len(ep.steps))]
    assert ds.num_episodes == 6 and [e["steps"] for e in ds.episodes] == [len(ep.steps) for ep in eps]


def test_column_indexing_matches_numpy(ds):
    full = np.asarray(ds.actions)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ds), 17)
    mask = rng.random(len(ds)) < 0.5
    for key in (3, -1, slice(2, 9), slice(None, None, 3), slice(None, None, -2), idx, idx.reshape(1, 17), mask, []):
        assert np.array_equal(ds.actions[key], full[key]), key
    with pytest.raises(IndexError):
        ds.actions[len(ds)]
    assert np.array_equal(ds.images[idx], np.asarray(ds.images)[idx])


def test_split_is_by_episode_deterministic_and_complete(ds):
    train, val = ds.split(val_fraction=0.34, seed=5)
    tr, va = set(train.episode_ids), set(val.episode_ids)
    assert not tr & va and len(va) == 2 and len(tr) == 4
    assert len(train) + len(val) == len(ds)
    again = ds.split(val_fraction=0.34, seed=5)
    assert list(again[1].episode_ids) == list(val.episode_ids)
    assert {tuple(ds.split(0.34, seed=s)[1].episode_ids) for s in range(8)} != {tuple(val.episode_ids)}
    assert np.array_equal(val.images[:], np.asarray(ds.images)[np.isin(ds.episode_ids, list(va))])
    assert len(ds.split(0.0)[1]) == 0


def test_batches_cover_an_epoch_in_a_seeded_order(ds):
    def epoch(seed, **kw):
        return [b.index.tolist() for b in ds.batches(4, seed=seed, **kw)]

    a = epoch(1)
    assert sorted(i for b in a for i in b) == list(range(len(ds)))
    assert a == epoch(1) and a != epoch(2)
    assert [i for b in epoch(0, shuffle=False) for i in b] == list(range(len(ds)))
    assert all(len(b) == 4 for b in epoch(1, drop_last=True))
    batch = next(iter(ds.batches(5, seed=3)))
    assert isinstance(batch, Batch) and batch.image.shape == (5, 64, 64, 3) and batch.action.dtype == np.float32
    assert np.array_equal(batch.next_image, np.asarray(ds.next_images)[batch.index])
    assert np.array_equal(batch.reward, np.asarray(ds.rewards)[batch.index])


def test_sample_is_uniform_with_replacement_and_seeded(ds):
    b1 = ds.sample(64, np.random.default_rng(9))
    b2 = ds.sample(64, np.random.default_rng(9))
    assert np.array_equal(b1.index, b2.index) and np.array_equal(b1.image, b2.image)
    assert len(set(b1.index.tolist())) < 64  # with replacement: 64 draws from fewer transitions repeat
    assert np.array_equal(b1.done, np.asarray(ds.dones)[b1.index])
    view = ds.split(0.34, seed=5)[1]
    sample = view.sample(32, np.random.default_rng(0))
    assert set(np.asarray(view.episode_ids)[sample.index]) <= set(view.episode_ids)


def test_bags_read_directly_give_the_same_dataset(ds, bags):
    direct = TransitionDataset.open(bags)
    assert len(direct) == len(ds)
    for name in ("images", "next_images", "actions", "rewards", "dones"):
        assert np.array_equal(np.asarray(getattr(direct, name)), np.asarray(getattr(ds, name)))
    tmp = direct._tmp.name
    train, _ = direct.split(0.5)
    direct.close()
    import os

    assert not os.path.exists(tmp)
    del train


def test_append_refuse_and_skip_known_bags(tmp_path, bags, eps):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    with pytest.raises(DatasetExistsError, match="--append"):
        ingest([bags / "b"], out, progress=False)
    report = ingest([bags], out, append=True, progress=False)
    assert report.bags == 1 and report.skipped_bags == 1 and report.problems.counts == {"already_ingested": 1}
    ds = TransitionDataset.open(out)
    assert [e["episode_id"] for e in ds.episodes] == [ep.meta.episode_id for ep in eps]
    assert np.array_equal(np.asarray(ds.images), transitions_of(eps)["images"])
    assert [e["index"] for e in ds.episodes] == list(range(6))
    index = json.loads((out / "dataset.json").read_text())
    assert [s["bag"] for s in index["sources"]] == [str(bags / "a"), str(bags / "b")]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(DatasetExistsError, match="not an rlcg dataset"):
        ingest([bags], tmp_path / "other", progress=False)


def test_appending_other_image_sizes_is_refused_per_episode(tmp_path, bags):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    small = write_bag(tmp_path / "small", real_episodes(2, image_size=32))
    with pytest.raises(Exception, match="2 image_size"):
        ingest([small], out, append=True, progress=False)
    assert len(TransitionDataset.open(out)) == 8  # unchanged


def test_damaged_datasets_are_reported(tmp_path, bags):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    npy = next(out.glob("shard_*/images.npy"))
    with npy.open("r+b") as f:
        f.truncate(npy.stat().st_size - 100)
    with pytest.raises(DatasetError, match="images.npy"):
        TransitionDataset.open(out)
    (out / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="damaged"):
        TransitionDataset.open(out)
    with pytest.raises(DatasetError, match="no such"):
        TransitionDataset.open(tmp_path / "nothing")


def test_shards_are_plain_npy_files(ds):
    for shard in ds.path.glob("shard_*"):
        images = np.load(shard / "images.npy", mmap_mode="r")
        rewards = np.load(shard / "rewards.npy")
        assert images.shape[0] == rewards.shape[0] > 0 and images.dtype == np.uint8


def test_ingest_memory_stays_flat(tmp_path):
    """Memory is bounded by a flush block, not by the bag: ingesting ~8 MB of transitions allocates a
    small fraction of that (datasets larger than RAM need this)."""
    eps = real_episodes(6, attempts=2, base_seed=3)
    many = []
    for k in range(50):
        for ep in eps:
            many.append(type(ep)(meta=type(ep.meta)(**{**vars(ep.meta), "episode_id": f"{ep.meta.episode_id}-{k}"}),
                                 steps=ep.steps))  # fmt: skip
    bag = write_bag(tmp_path / "bag", many)
    ingest([bag], tmp_path / "warm", progress=False)  # imports and caches first
    tracemalloc.start()
    report = ingest([bag], tmp_path / "ds", progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    data_bytes = sum(f.stat().st_size for f in (tmp_path / "ds").glob("shard_*/*.npy"))
    assert report.transitions == 50 * 12 and data_bytes > 8e6
    assert peak < 0.2 * data_bytes, (peak, data_bytes)


def _damage_npy(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "header_cut":
        path.write_bytes(data[:30])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif how == "header_garbled":
        path.write_bytes(data[:10] + bytes(range(100, 200)) + data[110:])
    elif how == "data_cut":
        path.write_bytes(data[:-10])
    elif how == "extra_bytes":
        path.write_bytes(data + b"xx")


@pytest.mark.parametrize("how", ["empty", "header_cut", "garbage", "header_garbled", "data_cut", "extra_bytes"])
def test_a_damaged_npy_file_is_a_dataset_error_naming_it(tmp_path, bags, how):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    npy = next(out.glob("shard_*/images.npy"))
    _damage_npy(npy, how)
    with pytest.raises(DatasetError, match="images.npy") as err:
        TransitionDataset.open(out)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("how", ["empty", "data_cut", "episodes"])
def test_appending_to_a_damaged_dataset_is_refused_and_changes_nothing(tmp_path, bags, how):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    if how == "episodes":
        next(out.glob("shard_*/episodes.json")).write_text("[1, 2]")
    else:
        _damage_npy(next(out.glob("shard_*/images.npy")), how)
    index = (out / "dataset.json").read_text()
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(DatasetError, match="is damaged, nothing was appended.*rebuild it from its bags"):
        ingest([bags / "b"], out, append=True, progress=False)
    assert (out / "dataset.json").read_text() == index and sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", "abc"),
        ("image_size", [64]),
        ("image_size", [64, 64, 3]),
        ("image_size", [64, -1]),
        ("image_size", [64.5, 64]),
        ("image_size", None),  # null only in a dataset without shards
        ("transitions", -1),
        ("episodes", "6"),
        ("domains", "sim"),
        ("shards", {"name": "shard_00000"}),
        ("shards", [{"name": "shard_00000"}]),
        ("shards", [{"name": "../x", "transitions": 1}]),
        ("shards", ["shard_00000"]),
        ("sources", [{}]),
    ],
)
def test_bad_fields_of_the_index_are_dataset_errors_naming_the_field(tmp_path, bags, field, value):
    out = tmp_path / "ds"
    ingest([bags / "a"], out, progress=False)
    index = json.loads((out / "dataset.json").read_text())
    index[field] = value
    (out / "dataset.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match=f"dataset.json is damaged: {field}"):
        TransitionDataset.open(out)
    with pytest.raises(DatasetError, match=f"dataset.json is damaged: {field}"):
        ingest([bags / "b"], out, append=True, progress=False)


def test_bags_read_directly_that_hold_nothing_usable_name_the_bags_not_a_scratch_directory(tmp_path):
    from rlcg.data.ingest import NothingIngestedError

    bag = tmp_path / "bags" / "episodes_0000.mcap"
    bag.parent.mkdir()
    bag.write_bytes(b"not an mcap file at all")
    with pytest.raises(NothingIngestedError) as err:
        TransitionDataset.open(tmp_path / "bags")
    assert "scratch" not in str(err.value) and "is unchanged" not in str(err.value), str(err.value)
