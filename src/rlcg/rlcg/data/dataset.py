"""Transition datasets for offline training: ``TransitionDataset.open(path)``.

``path`` is an ingested dataset (``rlcg data ingest``; columns are memory-mapped, so datasets larger
than RAM work) or bags (a bag, or a directory of bags), which are decoded once into a temporary
dataset with the same checks as ``rlcg data ingest``. Either way the API is the same:

- ``len(ds)``, ``ds.image_size`` (H, W), and per-transition columns ``images``, ``next_images``
  (N, H, W, 3) uint8, ``actions`` (N, 4) float32 [x, y, yaw, z_offset], ``rewards`` (N,) float32,
  ``dones`` (N,) bool, ``episode_index`` (N,) int32 into ``ds.episodes``, ``domain_index`` (N,) int16
  into ``ds.domain_names``; ``episode_ids`` and ``domains`` give the same as strings;
- ``split(val_fraction, seed)``: train and validation views that never share an episode;
- ``batches(batch_size, seed)``: one epoch in a shuffled order fixed by ``seed``;
- ``sample(batch_size, rng)``: uniform with replacement (Q-learning).

Columns are lazy ``Column`` objects indexed like arrays (int, slice, index array, boolean mask);
indexing reads only the rows asked for.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlcg.data.bags import Problems
from rlcg.data.store import DatasetError, is_dataset, load_shard, read_index
from rlcg.errors import RlcgError

log = logging.getLogger("rlcg.data")


@dataclass
class Batch:
    image: np.ndarray  # (B, H, W, 3) uint8
    action: np.ndarray  # (B, 4) float32
    reward: np.ndarray  # (B,) float32
    next_image: np.ndarray  # (B, H, W, 3) uint8
    done: np.ndarray  # (B,) bool
    domain: np.ndarray | None = None  # (B,) int16 index into the dataset's domain_names
    index: np.ndarray | None = None  # (B,) int64 transition indices in the dataset (view) drawn

    def __len__(self) -> int:
        return len(self.reward)


class Column:
    """One column of a dataset across its shards, optionally seen through a row selection (a view)."""

    def __init__(self, parts: list[np.ndarray], rows: np.ndarray | None = None):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.rows = rows  # global row numbers of a view, or None for all rows
        self.dtype = parts[0].dtype
        self.item_shape = parts[0].shape[1:]

    def __len__(self) -> int:
        return int(self.starts[-1]) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.item_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"index {k} out of range for a column of {n} rows")
            return self._gather(np.array([k % n]))[0]
        if isinstance(key, slice):
            idx = np.arange(n)[key]
            if self.rows is None and len(self.parts) == 1 and (key.step in (None, 1)):
                return np.asarray(self.parts[0][key])  # one contiguous read
            return self._gather(idx)
        idx = np.asarray(key)
        if idx.size == 0:
            idx = idx.astype(np.int64)  # an empty list comes as float64
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} for a column of {n} rows")
            idx = np.flatnonzero(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"columns are indexed by int, slice, int array or bool mask, not {idx.dtype}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a column of {n} rows")
        return self._gather(idx % n if idx.size else idx.astype(np.int64))

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (view positions) in that order; each shard is read in increasing row order."""
        flat = idx.reshape(-1)
        rows = flat if self.rows is None else self.rows[flat]
        out = np.empty((len(rows), *self.item_shape), dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        shard = np.searchsorted(self.starts, sorted_rows, side="right") - 1
        bounds = np.searchsorted(shard, np.arange(len(self.parts) + 1))
        for s in range(len(self.parts)):
            lo, hi = bounds[s], bounds[s + 1]
            if lo < hi:
                out[order[lo:hi]] = self.parts[s][sorted_rows[lo:hi] - self.starts[s]]
        return out.reshape((*idx.shape, *self.item_shape))

    def view(self, rows: np.ndarray) -> Column:
        base = rows if self.rows is None else self.rows[rows]
        return Column(self.parts, base)


class TransitionDataset:
    """Transitions (image, action, reward, next image, done, domain, episode) for offline training."""

    COLUMNS = ("images", "next_images", "actions", "rewards", "dones", "episode_index", "domain_index", "step_index")

    def __init__(
        self,
        columns: dict[str, Column],
        episodes: list[dict],
        domain_names: list[str],
        image_size: tuple[int, int],
        path: Path,
        problems: Problems | None = None,
    ):
        self._columns = columns
        self.episodes = episodes  # every episode of the underlying dataset, by global index
        self.domain_names = list(domain_names)
        self.image_size = tuple(image_size)
        self.path = path
        self.problems = problems or Problems()  # what reading bags directly skipped
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._owns_tmp = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, progress: bool = False) -> TransitionDataset:
        """An ingested dataset, or the bags at ``path`` (decoded into a temporary dataset)."""
        path = Path(path)
        if is_dataset(path):
            return cls._open_dataset(path)
        if not path.exists():
            raise DatasetError(f"{path}: no such dataset or bag directory")
        from rlcg.data.ingest import ingest
        from rlcg.scratch import scratch_root

        # with the run's other scratch files (removed at exit with them)
        tmp = tempfile.TemporaryDirectory(prefix="bags-", dir=scratch_root())
        scratch = Path(tmp.name) / "dataset"
        try:
            report = ingest([path], scratch, progress=progress, fsync=False)
            ds = cls._open_dataset(scratch)
        except RlcgError as exc:  # name the user's bags, not the scratch dataset they were read into
            tmp.cleanup()
            raise type(exc)(str(exc).replace(f"; {scratch} is unchanged", "").replace(str(scratch), str(path))) from exc
        except BaseException:
            tmp.cleanup()
            raise
        ds._tmp = tmp  # removed with the last object that holds it (this dataset or a view of it)
        ds._owns_tmp = True
        ds.path = path
        ds.problems = report.problems
        if len(report.problems):
            log.warning(
                "%s: %d problem(s) while reading the bags: %s", path, len(report.problems), report.problems.summary()
            )
        return ds

    @classmethod
    def _open_dataset(cls, root: Path) -> TransitionDataset:
        index = read_index(root)
        if not index["shards"]:
            raise DatasetError(f"{root} holds no transitions")
        size = tuple(index["image_size"])
        parts: dict[str, list[np.ndarray]] = {c: [] for c in cls.COLUMNS}
        episodes: list[dict] = []
        for shard in index["shards"]:
            arrays, eps = load_shard(root, shard, size)
            for c in cls.COLUMNS:
                parts[c].append(arrays[c])
            episodes.extend(eps)
        if len(episodes) != index["episodes"] or sum(len(p) for p in parts["rewards"]) != index["transitions"]:
            raise DatasetError(f"{root}: the shards do not add up to the counts in its index")
        columns = {c: Column(p) for c, p in parts.items()}
        return cls(columns, episodes, index["domains"], size, root)

    # ------------------------------------------------------------------ columns
    def __len__(self) -> int:
        return len(self._columns["rewards"])

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"TransitionDataset({self.path}, {len(self)} transitions, {self.num_episodes} episodes, {h}x{w})"

    images = property(lambda self: self._columns["images"])
    next_images = property(lambda self: self._columns["next_images"])
    actions = property(lambda self: self._columns["actions"])
    rewards = property(lambda self: self._columns["rewards"])
    dones = property(lambda self: self._columns["dones"])
    episode_index = property(lambda self: self._columns["episode_index"])
    domain_index = property(lambda self: self._columns["domain_index"])
    step_index = property(lambda self: self._columns["step_index"])

    @property
    def episode_ids(self) -> np.ndarray:
        """(N,) episode id strings per transition."""
        names = np.array([e["episode_id"] for e in self.episodes], dtype=object)
        return names[np.asarray(self.episode_index)]

    @property
    def domains(self) -> np.ndarray:
        """(N,) domain name per transition."""
        return np.array(self.domain_names, dtype=object)[np.asarray(self.domain_index)]

    @property
    def num_episodes(self) -> int:
        return len(np.unique(np.asarray(self.episode_index)))

    # ------------------------------------------------------------------ views
    def subset(self, rows: np.ndarray) -> TransitionDataset:
        """A view of the transitions ``rows`` (positions in this dataset)."""
        rows = np.asarray(rows, dtype=np.int64)
        view = TransitionDataset(
            {c: col.view(rows) for c, col in self._columns.items()},
            self.episodes,
            self.domain_names,
            self.image_size,
            self.path,
            self.problems,
        )
        view._tmp = self._tmp  # a view of bags read directly keeps their temporary dataset alive
        return view

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[TransitionDataset, TransitionDataset]:
        """Train and validation views; whole episodes go to one side.

        Episodes are ranked by a hash of (seed, episode id) and the first ``round(val_fraction * E)``
        go to validation: the split does not depend on the order of the data, episodes recorded twice
        (same id) land on the same side, and adding data moves few episodes across.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        ep_index = np.asarray(self.episode_index)
        present = np.unique(ep_index)
        ids = sorted({self.episodes[i]["episode_id"] for i in present})
        n_val = int(round(val_fraction * len(ids)))
        if val_fraction > 0 and n_val == 0 and len(ids) > 1:
            n_val = 1
        rank = sorted(ids, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).digest())
        val_ids = set(rank[:n_val])
        val_episodes = np.array([self.episodes[i]["episode_id"] in val_ids for i in range(len(self.episodes))])
        is_val = val_episodes[ep_index] if len(ep_index) else np.zeros(0, bool)
        return self.subset(np.flatnonzero(~is_val)), self.subset(np.flatnonzero(is_val))

    # ------------------------------------------------------------------ batches
    def get_batch(self, idx: np.ndarray) -> Batch:
        idx = np.asarray(idx, dtype=np.int64)
        return Batch(
            image=self.images[idx],
            action=self.actions[idx],
            reward=self.rewards[idx],
            next_image=self.next_images[idx],
            done=self.dones[idx],
            domain=self.domain_index[idx],
            index=idx,
        )

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement."""
        if len(self) == 0:
            raise DatasetError("cannot sample from an empty dataset")
        return self.get_batch(rng.integers(0, len(self), batch_size))

    def batches(self, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False) -> Iterator[Batch]:
        """One epoch of batches; the order is fixed by ``seed`` (in storage order when not ``shuffle``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.get_batch(order[start : start + batch_size])

    def close(self) -> None:
        """Remove the temporary dataset of bags read directly (also done when the object is collected)."""
        if self._tmp is not None and self._owns_tmp:
            self._tmp.cleanup()
        self._tmp = None
