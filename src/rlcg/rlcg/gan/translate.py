"""A dataset's images translated by a trained GAN run (``rlcg translate``), and a policy that sees
the world through a run's G (``--translate-with`` of ``rlcg eval`` and ``rlcg collect``).

G(x) of every sim image (or F(y) of every real image) goes into a new dataset with the source's
actions, rewards and episodes unchanged, so that ``rlcg train-q`` can train a Q-network on
translated images with its own recipe (data scale, steps, schedule) and G frozen, apart from the
joint training where Q_real sees G(x) of one batch at a time. The source is never modified; the
new dataset appears at ``out`` only once it is complete.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from rlcg.data.store import EPISODES, NpyAppender, is_dataset, load_shard, read_index, write_index
from rlcg.errors import RlcgError

IMAGE_COLUMNS = ("images", "next_images")


class TranslateError(RlcgError):
    """A translation that cannot be made (wrong run, image size, existing output, non-finite output)."""


@torch.no_grad()
def translate_images(generator: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) -> the generator's translation, uint8 (B, H, W, 3), computed on the device
    the generator's weights are on."""
    from rlcg.gan.trainer import to_gan_range, to_uint8_images
    from rlcg.models.qnet import QNetwork

    weight = next(generator.parameters(), None) if isinstance(generator, torch.nn.Module) else None
    device = weight.device if weight is not None else torch.device("cpu")
    out = generator(to_gan_range(QNetwork.preprocess(torch.tensor(np.asarray(images), device=device))))
    if not torch.isfinite(out).all():
        raise TranslateError("the generator returned non-finite pixels (NaN or inf): the run's weights are damaged")
    return to_uint8_images(out)


def _load_gan_run(run: Path):
    """The networks of the GAN run at ``run``, or a clear error where there is none."""
    from rlcg.gan.trainer import load_run

    if not (run / "checkpoint").is_dir():
        raise TranslateError(f"{run}: no GAN run here (no checkpoint/ directory)")
    return load_run(run)


def translate_dataset(
    run: str | Path,
    source: str | Path,
    out: str | Path,
    generator: str = "G",
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Write ``out``: the dataset (or bags) at ``source`` with every image and next image replaced by
    ``generator``'s translation (G: sim -> real, F: real -> sim) from the run's last checkpoint,
    computed on ``device`` (a torch device name).
    Domains become "G(sim)" and the like; the index records the run and generator under
    "translation". Returns that record with the counts."""
    from tqdm import tqdm

    run, source, out = Path(run), Path(source), Path(out)
    if generator not in ("G", "F"):
        raise TranslateError(f"generator must be G (sim -> real) or F (real -> sim), not {generator!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TranslateError(f"{out} exists and is not empty; choose a new directory")
    if batch_size < 1:
        raise TranslateError(f"batch_size must be at least 1, got {batch_size}")
    trained = _load_gan_run(run)
    net = trained.G if generator == "G" else trained.F
    if net is None:
        raise TranslateError(f"{run}: a {trained.config.method} run has no F (only cyclegan and rl-cyclegan have one)")
    net = net.to(device)
    if not source.exists():
        raise TranslateError(f"{source}: no such dataset or bag directory")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.partial-", dir=out.parent) as tmp:
        root = source
        if not is_dataset(source):  # bags: decoded once, with ingest's checks, next to the output
            from rlcg.data.ingest import ingest

            root = Path(tmp) / "ingested"
            ingest([source], root, progress=progress, fsync=False)
        index = read_index(root)
        size = tuple(index["image_size"])
        trained_size = trained.Q_real.config.image_size
        if size != (trained_size, trained_size):
            raise TranslateError(
                f"{source} holds {size[0]}x{size[1]} images; the run was trained on {trained_size}x{trained_size}"
            )
        rename = {d: f"{generator}({d})" for d in index["domains"]}
        target = Path(tmp) / "dataset"
        target.mkdir()
        bar = tqdm(
            total=2 * index["transitions"],
            unit="img",
            desc=f"translate {generator}",
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            for shard in index["shards"]:
                arrays, episodes = load_shard(root, shard, size)
                folder = target / shard["name"]
                folder.mkdir()
                for column in IMAGE_COLUMNS:
                    writer = NpyAppender(folder / f"{column}.npy", np.dtype(np.uint8), (*size, 3))
                    for start in range(0, len(arrays[column]), batch_size):
                        block = arrays[column][start : start + batch_size]
                        writer.append(translate_images(net, block))
                        bar.update(len(block))
                    writer.close(fsync=False)
                for column in arrays:
                    if column not in IMAGE_COLUMNS:
                        shutil.copyfile(root / shard["name"] / f"{column}.npy", folder / f"{column}.npy")
                for episode in episodes:
                    episode["domain"] = rename[episode["domain"]]
                (folder / EPISODES).write_text(json.dumps(episodes), encoding="utf-8")
        finally:
            bar.close()
        record = {
            "run": str(run.resolve()),
            "method": trained.config.method,
            "generator": generator,
            "source": str(source.resolve()),
        }
        index.update(domains=[rename[d] for d in index["domains"]], translation=record)
        write_index(target, index, fsync=True)
        if out.exists():  # empty (checked above): replaced by the finished dataset in one rename
            out.rmdir()
        target.rename(out)
    return record | {"episodes": index["episodes"], "transitions": index["transitions"], "out": str(out)}


class TranslatedPolicy:
    """A learned policy that sees each camera image through a GAN run's G (sim -> real).

    In sim this is Q_real acting as it is trained: on G(x). Its episodes are on-policy sim data for
    the run (its own grasps, labelled by the simulator), and its success rate says how well Q_real
    grasps in the world it learns in, apart from how well G(x) stands for real images. The episode
    keeps the untranslated image, as every sim episode does; the trainer translates it again with
    the G of its own step.
    """

    def __init__(self, policy, generator: torch.nn.Module, label: str = "G"):
        self.policy = policy
        self.generator = generator.eval()
        self.name = f"{policy.name}+{label}"

    def act(self, obs):
        from rlcg.rl.policy import check_camera_image

        check_camera_image(obs.image, self.policy.image_size)
        seen = translate_images(self.generator, obs.image[None])[0]
        return self.policy.act(dataclasses.replace(obs, image=seen))


def translated_policy(policy, run: str | Path) -> TranslatedPolicy:
    """``policy`` seeing through the G of the GAN run at ``run`` (checked to fit its image size)."""
    run = Path(run)
    trained = _load_gan_run(run)
    size = trained.Q_real.config.image_size
    if size != policy.image_size:
        raise TranslateError(
            f"{run} was trained on {size}x{size} images, the policy on {policy.image_size}x{policy.image_size}"
        )
    return TranslatedPolicy(policy, trained.G.to(policy.device), f"G({run.name})")
