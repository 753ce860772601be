"""Visual domains: built-ins render, pseudo-real differs from sim, bad domain files are named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from rlcg.sim.domains import DomainError, builtin_domains, load_domain
from rlcg.sim.world import ThreeBinWorld


def test_builtin_domains():
    assert {"sim", "randomized", "pseudo-real"} <= set(builtin_domains())


@pytest.mark.parametrize("name", ["sim", "randomized", "pseudo-real", "sim-camera-jitter"])
@pytest.mark.parametrize("size", [64, 128, 472])
def test_builtin_domains_render_at_every_size(name, size):
    with ThreeBinWorld(domain=name, bins="multi", image_size=size) as w:
        img = w.reset(4)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 10


def _renders(domain, seeds=(0, 1, 2)):
    with ThreeBinWorld(domain=domain, bins="single") as w:
        return np.stack([w.reset(s) for s in seeds]).astype(np.float32)


def test_pseudo_real_differs_clearly_from_sim():
    sim, real = _renders("sim"), _renders("pseudo-real")
    # same scenes (same seeds and physics), different looks
    assert np.abs(sim - real).mean() > 20
    # and per-channel statistics differ (colour cast, textures)
    assert np.abs(sim.mean(axis=(0, 1, 2)) - real.mean(axis=(0, 1, 2))).max() > 10


def test_randomized_changes_look_per_episode_but_not_per_seed():
    with ThreeBinWorld(domain="randomized") as w:
        a, b, a2 = w.reset(0), w.reset(1), w.reset(0)
    assert np.array_equal(a, a2)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 20


def test_sim_camera_jitter_moves_only_the_camera():
    sim, jittered = _renders("sim"), _renders("sim-camera-jitter")
    with ThreeBinWorld(domain="sim-camera-jitter", bins="single") as w, ThreeBinWorld(domain="sim", bins="single") as s:
        poses = []
        for seed in (0, 1, 2):
            w.reset(seed)
            s.reset(seed)
            pos, rot = w.appearance.camera_offset
            angle = np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
            assert np.abs(pos).max() <= 0.02 and 0 < angle <= 2.0 * np.sqrt(3)
            assert abs(w.appearance.fov_scale - 1) <= 0.05
            assert w.appearance.light == s.appearance.light  # sim's look, only the camera moves
            poses.append(pos)
    assert not np.allclose(poses[0], poses[1])
    # the same colours as sim, seen from elsewhere: pixels move, channel means hardly do
    assert np.abs(sim - jittered).mean() > 2
    assert np.abs(sim.mean(axis=(0, 1, 2)) - jittered.mean(axis=(0, 1, 2))).max() < 5


def _write(tmp_path, text: str, name: str = "d.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_custom_transform_is_applied(tmp_path):
    (tmp_path / "fx.py").write_text(
        "import numpy as np\ndef invert(image, rng):\n    return (255 - image).astype(np.uint8)\n"
    )
    path = _write(tmp_path, "name: inverted\ntransform: fx.py:invert\n")
    plain = _write(tmp_path, "name: plain\n", "plain.yaml")
    with ThreeBinWorld(domain=load_domain(path)) as w:
        inverted = w.reset(3)
    with ThreeBinWorld(domain=load_domain(plain)) as w:
        base = w.reset(3)
    assert np.array_equal(inverted, 255 - base)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nlight:\n  colour: [1, 1, 1]\n", "unknown field 'colour'"),
        ("name: x\nlight:\n  ambient: bright\n", "light.ambient: expected a number"),
        ("name: x\nsensor:\n  jpeg_quality: 200\n", "jpeg_quality"),
        ("name: x\ntable:\n  texture: missing.png\n", "table.texture: texture file"),
        ("name: x\ntable:\n  texture: {pattern: plaid}\n", "pattern 'plaid'"),
        ("name: x\ntransform: nofile.py:f\n", "transform: file"),
        ("name: x\ntransform: just_a_name\n", "file.py:function"),
        ("- a list\n", "mapping"),
        ("name: x\nsensor:\n  contrast: .nan\n", "sensor.contrast: expected a finite number"),
        ("name: x\ncamera:\n  fov_jitter: 1.5\n", "fov_jitter must be within"),
        ("name: x\ncamera:\n  position_jitter: -0.01\n", "position_jitter must be >= 0"),
        ("name: x\nobjects:\n  texture_contrast: 2.0\n", "texture_contrast must be within"),
        ("name: x\nlight:\n  ambient_jitter: -0.1\n", "ambient_jitter must be >= 0"),
        ("name: x\ntable:\n  texture: {pattern: wood, seed: -1}\n", "seed must be a whole number of at least 0"),
        ("name: x\ntable:\n  texture: {pattern: wood, scale: 0}\n", "scale must be a finite number above 0"),
        ("name: x\nlight:\n  ambient: 0.1\nlight:\n  diffuse: 0.2\n", "'light' is given twice"),
    ],
)
def test_bad_domain_files_name_the_field(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DomainError, match=message) as err:
        load_domain(path)
    assert str(path) in str(err.value) or "d.yaml" in str(err.value)


def test_transform_with_wrong_output_is_named(tmp_path):
    (tmp_path / "fx.py").write_text("def shrink(image, rng):\n    return image[::2, ::2]\n")
    path = _write(tmp_path, "name: bad\ntransform: fx.py:shrink\n")
    with ThreeBinWorld(domain=load_domain(path)) as w, pytest.raises(DomainError, match="fx.py:shrink returned"):
        w.reset(0)


def test_a_transform_that_raises_is_named(tmp_path):
    (tmp_path / "fx.py").write_text("def boom(image, rng):\n    raise RuntimeError('my bug')\n")
    path = _write(tmp_path, "name: bad\ntransform: fx.py:boom\n")
    raised = pytest.raises(DomainError, match="transform fx.py:boom raised RuntimeError: my bug")
    with ThreeBinWorld(domain=load_domain(path)) as w, raised:
        w.reset(0)


def test_transform_missing_function(tmp_path):
    (tmp_path / "fx.py").write_text("x = 1\n")
    with pytest.raises(DomainError, match="no function 'nothere'"):
        load_domain(_write(tmp_path, "name: bad\ntransform: fx.py:nothere\n"))


def test_unknown_builtin_name_lists_the_choices():
    with pytest.raises(DomainError, match="built-in domains are .*pseudo-real"):
        load_domain("no-such-domain")


def test_diagnostic_domains_split_pseudo_real_into_look_and_geometry():
    """docs/domains/: the two halves of pseudo-real that docs/results.md evaluates the sim policy in."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "domains"
    sim, real = load_domain("sim").spec, load_domain("pseudo-real").spec
    camera_only = load_domain(docs / "sim-camera.yaml").spec
    look_only = load_domain(docs / "pseudo-real-nominal-camera.yaml").spec
    assert camera_only.camera == real.camera != sim.camera
    assert camera_only.light == sim.light and camera_only.sensor == sim.sensor and camera_only.table == sim.table
    assert look_only.camera == sim.camera
    for part in ("table", "tray", "objects", "robot", "light", "sensor"):
        assert getattr(look_only, part) == getattr(real, part), part
