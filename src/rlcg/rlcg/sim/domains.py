"""Visual domains: how the world looks (surfaces, light, camera jitter, sensor effects).

A domain is a YAML file (built-ins in config/domains/, fields documented in docs/domains.md).
Per episode a ``Domain`` draws a ``DomainSample``: the concrete colours, textures, light,
camera offset and sensor parameters of that episode, from the episode's own random stream.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from rlcg import paths
from rlcg.configio import ConfigError, from_dict, load_yaml
from rlcg.sim import textures
from rlcg.sim.geometry import rpy_matrix

if TYPE_CHECKING:
    from rlcg.sim.config import SimConfig
    from rlcg.sim.objects import ObjectModel
    from rlcg.sim.world import ThreeBinWorld

Vec3 = tuple[float, float, float]


class DomainError(ConfigError):
    """A domain file or its transform is invalid; the message names the file and field."""


@dataclass(frozen=True)
class ProceduralTexture:
    pattern: str = "noise"
    scale: float = 6.0
    contrast: float = 0.35
    seed: int = 0

    def validate(self) -> None:
        if self.pattern not in textures.PATTERNS:
            raise DomainError(f"pattern {self.pattern!r} is not one of {', '.join(textures.PATTERNS)}")
        if not 0.0 <= self.contrast <= 1.0:
            raise DomainError("contrast must be within [0, 1]")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise DomainError(f"scale must be a finite number above 0, got {self.scale}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DomainError(f"seed must be a whole number of at least 0, got {self.seed!r}")


@dataclass(frozen=True)
class SurfaceSpec:
    color: Vec3 | None = None  # RGB in [0, 1]; None keeps the model's own colour
    color_jitter: float = 0.0  # uniform +- per channel, per episode (per object for objects)
    random_color: bool = False  # a uniformly random colour per episode (per object for objects)
    texture: str | ProceduralTexture | None = None  # PNG/JPG path relative to the YAML, or procedural
    random_texture: bool = False  # a random procedural texture per episode
    texture_contrast: float = 0.35  # contrast of random textures

    def validate(self) -> None:
        if self.color is not None and not all(0.0 <= v <= 1.0 for v in self.color):
            raise DomainError("color components must be within [0, 1]")
        if self.color_jitter < 0:
            raise DomainError("color_jitter must be >= 0")
        if not 0.0 <= self.texture_contrast <= 1.0:
            raise DomainError("texture_contrast must be within [0, 1]")


@dataclass(frozen=True)
class LightSpec:
    direction: Vec3 = (0.4, -0.3, 1.0)  # towards the light, world frame
    direction_jitter: float = 0.0
    color: Vec3 = (1.0, 1.0, 1.0)
    color_jitter: float = 0.0
    distance: float = 2.0
    ambient: float = 0.6
    ambient_jitter: float = 0.0
    diffuse: float = 0.35
    diffuse_jitter: float = 0.0
    specular: float = 0.05
    specular_jitter: float = 0.0
    shadows: bool = False

    def validate(self) -> None:
        _non_negative(self, "direction_jitter", "color_jitter", "distance", "ambient", "ambient_jitter")
        _non_negative(self, "diffuse", "diffuse_jitter", "specular", "specular_jitter")
        if not all(0.0 <= v <= 1.0 for v in self.color):
            raise DomainError("color components must be within [0, 1]")


@dataclass(frozen=True)
class CameraSpec:
    offset_xyz: Vec3 = (0.0, 0.0, 0.0)  # fixed offset of the optical frame (m, optical axes)
    offset_rpy_deg: Vec3 = (0.0, 0.0, 0.0)
    position_jitter: float = 0.0  # uniform +- per axis (m), per episode
    rotation_jitter_deg: float = 0.0  # uniform +- per axis, per episode
    fov_scale: float = 1.0
    fov_jitter: float = 0.0  # relative, uniform +-

    def validate(self) -> None:
        if not 0.2 < self.fov_scale < 3.0:
            raise DomainError("fov_scale must be within (0.2, 3)")
        if not 0.0 <= self.fov_jitter < 0.5:  # a field of view scaled by 1 +- fov_jitter stays positive
            raise DomainError("fov_jitter must be within [0, 0.5)")
        _non_negative(self, "position_jitter", "rotation_jitter_deg")


@dataclass(frozen=True)
class SensorSpec:
    color_gain: Vec3 = (1.0, 1.0, 1.0)  # per-channel gain: a colour cast
    color_gain_jitter: float = 0.0
    brightness: float = 0.0  # added, as a fraction of full scale
    brightness_jitter: float = 0.0
    contrast: float = 1.0
    contrast_jitter: float = 0.0
    gamma: float = 1.0
    blur_sigma: float = 0.0  # Gaussian blur, in pixels of a 64-pixel-wide image (scales with size)
    noise_std: float = 0.0  # Gaussian pixel noise, in 0..255 units
    vignette: float = 0.0  # darkening at the corners, 0..1
    jpeg_quality: int | None = None  # JPEG re-encoding at this quality (1..95)

    def validate(self) -> None:
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 95:
            raise DomainError("jpeg_quality must be within 1..95")
        if not 0.0 <= self.vignette <= 1.0:
            raise DomainError("vignette must be within [0, 1]")
        if self.gamma <= 0:
            raise DomainError("gamma must be > 0")
        if self.blur_sigma < 0 or self.noise_std < 0:
            raise DomainError("blur_sigma and noise_std must be >= 0")
        _non_negative(self, "color_gain_jitter", "brightness_jitter", "contrast", "contrast_jitter")
        if not all(v >= 0 for v in self.color_gain):
            raise DomainError("color_gain components must be >= 0")


def _non_negative(spec, *names: str) -> None:
    """Jitters, intensities and distances are magnitudes: a negative one would be ignored or flip a sign."""
    for name in names:
        if getattr(spec, name) < 0:
            raise DomainError(f"{name} must be >= 0, got {getattr(spec, name)}")


@dataclass(frozen=True)
class DomainSpec:
    name: str
    description: str = ""
    table: SurfaceSpec = field(default_factory=SurfaceSpec)
    tray: SurfaceSpec = field(default_factory=SurfaceSpec)
    objects: SurfaceSpec = field(default_factory=SurfaceSpec)
    robot: SurfaceSpec = field(default_factory=SurfaceSpec)
    light: LightSpec = field(default_factory=LightSpec)
    camera: CameraSpec = field(default_factory=CameraSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    transform: str | None = None  # "file.py:function", relative to the YAML file


ImageTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@cache
def _load_transform(file: Path, func: str) -> ImageTransform:
    spec = importlib.util.spec_from_file_location(f"rlcg_domain_transform_{abs(hash(file))}", file)
    if spec is None or spec.loader is None:
        raise DomainError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code is a domain error
        raise DomainError(f"{file}: importing the transform failed: {exc!r}") from exc
    fn = getattr(module, func, None)
    if not callable(fn):
        raise DomainError(f"{file}: has no function {func!r}")
    return fn


class Domain:
    """A loaded domain: its spec and the directory its relative paths are resolved from."""

    def __init__(self, spec: DomainSpec, source: Path | None = None):
        self.spec = spec
        self.source = source
        base = source.parent if source is not None else Path.cwd()
        where = str(source) if source is not None else spec.name
        self._textures: dict[str, Path] = {}
        for surface in ("table", "tray", "objects", "robot"):
            tex = getattr(spec, surface).texture
            if isinstance(tex, str):
                path = (base / tex).resolve()
                if not path.is_file():
                    raise DomainError(f"{where}: {surface}.texture: texture file {path} not found")
                try:
                    with Image.open(path) as im:
                        im.verify()
                except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad images
                    raise DomainError(f"{where}: {surface}.texture: {path} is not a readable image ({exc})") from exc
                self._textures[surface] = path
        self._transform_ref: tuple[Path, str] | None = None
        if spec.transform is not None:
            if ":" not in spec.transform:
                raise DomainError(f"{where}: transform must be 'file.py:function', got {spec.transform!r}")
            file, func = spec.transform.rsplit(":", 1)
            path = (base / file).resolve()
            if not path.is_file():
                raise DomainError(f"{where}: transform: file {path} not found")
            _load_transform(path, func)  # fail now, not in the middle of a collection run
            self._transform_ref = (path, func)

    @property
    def name(self) -> str:
        return self.spec.name

    def transform(self) -> ImageTransform | None:
        return _load_transform(*self._transform_ref) if self._transform_ref else None

    def texture_path(self, surface: str) -> Path | None:
        return self._textures.get(surface)

    def sample(self, rng: np.random.Generator, config: SimConfig) -> DomainSample:
        return DomainSample(self, rng, config)

    def __reduce__(self):
        return (Domain, (self.spec, self.source))

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, source={str(self.source) if self.source else None!r})"


def _jitter(rng: np.random.Generator, value: float, amount: float) -> float:
    return value + (rng.uniform(-amount, amount) if amount > 0 else 0.0)


@dataclass
class LightSample:
    direction: Vec3
    color: Vec3
    distance: float
    ambient: float
    diffuse: float
    specular: float
    shadows: bool


class DomainSample:
    """The concrete appearance of one episode, drawn from the episode's random stream."""

    def __init__(self, domain: Domain, rng: np.random.Generator, config: SimConfig):
        self.domain = domain
        self.rng = rng
        spec = domain.spec
        ls = spec.light
        direction = np.array([_jitter(rng, v, ls.direction_jitter) for v in ls.direction])
        direction[2] = max(direction[2], 0.2)  # keep the light above the table
        direction /= np.linalg.norm(direction)
        self.light = LightSample(
            direction=tuple(direction.tolist()),
            color=tuple(float(np.clip(_jitter(rng, v, ls.color_jitter), 0, 1)) for v in ls.color),
            distance=ls.distance,
            ambient=float(np.clip(_jitter(rng, ls.ambient, ls.ambient_jitter), 0, 2)),
            diffuse=float(np.clip(_jitter(rng, ls.diffuse, ls.diffuse_jitter), 0, 2)),
            specular=float(np.clip(_jitter(rng, ls.specular, ls.specular_jitter), 0, 2)),
            shadows=ls.shadows,
        )
        cs = spec.camera
        pos = np.array(cs.offset_xyz) + rng.uniform(-1, 1, 3) * cs.position_jitter
        rpy = np.radians(np.array(cs.offset_rpy_deg) + rng.uniform(-1, 1, 3) * cs.rotation_jitter_deg)
        self.camera_offset = (pos, rpy_matrix(*rpy))
        self.fov_scale = float(cs.fov_scale * (1.0 + rng.uniform(-cs.fov_jitter, cs.fov_jitter)))
        ss = spec.sensor
        self.color_gain = np.array([_jitter(rng, v, ss.color_gain_jitter) for v in ss.color_gain], np.float32)
        self.brightness = _jitter(rng, ss.brightness, ss.brightness_jitter)
        self.contrast = _jitter(rng, ss.contrast, ss.contrast_jitter)
        self.surface_looks = {
            "table": self._surface(spec.table, config.world.table.color, "table"),
            "tray": self._surface(spec.tray, config.world.bins.color, "tray"),
            "robot": self._surface(spec.robot, None, "robot"),
        }
        self._render_count = 0
        self._noise_seed = int(rng.integers(2**31))

    def _texture(self, s: SurfaceSpec, surface: str) -> Path | None:
        if s.random_texture:
            # A bounded set of variants: textures are cached by the renderer for the whole run.
            kind = textures.PATTERNS[int(self.rng.integers(len(textures.PATTERNS)))]
            scale = float(3 + 3 * int(self.rng.integers(4)))
            return textures.texture_file(kind, s.texture_contrast, scale, int(self.rng.integers(8)))
        if isinstance(s.texture, ProceduralTexture):
            t = s.texture
            return textures.texture_file(t.pattern, t.contrast, t.scale, t.seed)
        if isinstance(s.texture, str):
            return self.domain.texture_path(surface)
        return None

    def _colour(self, s: SurfaceSpec, default) -> tuple[float, float, float] | None:
        if s.random_color:
            rgb = self.rng.uniform(0.05, 0.95, 3)
        elif s.color is not None:
            rgb = np.array(s.color)
        elif default is not None:
            rgb = np.array(default[:3])
        else:
            return None
        if s.color_jitter > 0:
            rgb = rgb + self.rng.uniform(-s.color_jitter, s.color_jitter, 3)
        return tuple(float(v) for v in np.clip(rgb, 0.0, 1.0))

    def _surface(self, s: SurfaceSpec, default, surface: str):
        return self._colour(s, default), self._texture(s, surface)

    def object_look(self, model: ObjectModel) -> tuple[tuple[float, float, float, float], Path | None]:
        """Colour (RGBA) and texture of one object, drawn in spawn order."""
        spec = self.domain.spec.objects
        rgb = self._colour(spec, model.rgba)
        assert rgb is not None
        return (*rgb, 1.0), self._texture(spec, "objects")

    def apply(self, world: ThreeBinWorld) -> None:
        """Set colours and textures of table, trays and robot (objects are set when spawned)."""
        c = world.client

        def paint(body: int, link: int, look) -> None:
            rgb, tex = look
            rgba = [*rgb, 1] if rgb is not None else [1, 1, 1, 1]
            if tex is not None:
                # PyBullet multiplies the texture by the colour: grey patterns take the surface colour.
                c.changeVisualShape(body, link, textureUniqueId=world.texture_id(tex), rgbaColor=rgba)
            elif rgb is not None:
                c.changeVisualShape(body, link, rgbaColor=rgba)

        paint(world._table, -1, self.surface_looks["table"])
        for tray in world._trays:
            paint(tray, -1, self.surface_looks["tray"])
        robot_look = self.surface_looks["robot"]
        if robot_look[0] is not None or robot_look[1] is not None:
            for link in range(-1, c.getNumJoints(world._robot)):
                paint(world._robot, link, robot_look)

    # ------------------------------------------------------------------ image side
    def postprocess(self, image: np.ndarray) -> np.ndarray:
        """Sensor effects, then the domain's own transform, on a rendered uint8 image."""
        ss = self.domain.spec.sensor
        self._render_count += 1
        rng = np.random.default_rng([self._noise_seed, self._render_count])
        h, w = image.shape[:2]
        img = image.astype(np.float32) / 255.0
        changed = False
        if np.any(self.color_gain != 1.0):
            img = img * self.color_gain[None, None, :]
            changed = True
        if self.contrast != 1.0 or self.brightness != 0.0:
            img = (img - 0.5) * self.contrast + 0.5 + self.brightness
            changed = True
        if ss.gamma != 1.0:
            img = np.clip(img, 0, 1) ** (1.0 / ss.gamma)
            changed = True
        if ss.blur_sigma > 0:
            img = gaussian_blur(img, ss.blur_sigma * w / 64.0)
            changed = True
        if ss.vignette > 0:
            yy, xx = np.mgrid[0:h, 0:w]
            r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
            img = img * (1.0 - ss.vignette * np.clip(r2 / 2.0, 0, 1))[..., None]
            changed = True
        if ss.noise_std > 0:
            img = img + rng.normal(0.0, ss.noise_std / 255.0, img.shape).astype(np.float32)
            changed = True
        if changed:
            image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if ss.jpeg_quality is not None:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=ss.jpeg_quality)
            image = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        transform = self.domain.transform()
        if transform is not None:
            try:
                out = transform(image, rng)
            except Exception as exc:  # the user's code: name it, as for its other faults
                raise DomainError(
                    f"{self.domain.source}: transform {self.domain.spec.transform} raised {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(out, np.ndarray) or out.shape != image.shape or out.dtype != np.uint8:
                got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
                raise DomainError(
                    f"{self.domain.source}: transform {self.domain.spec.transform} returned {got}; "
                    f"expected uint8 {image.shape}"
                )
            image = out
        return np.ascontiguousarray(image)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an H x W x C float image, edges replicated."""
    if sigma <= 0:
        return img
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    out = sum(k[i] * pad[i : i + img.shape[0]] for i in range(k.size))
    pad = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(k[i] * pad[:, i : i + img.shape[1]] for i in range(k.size))


# ---------------------------------------------------------------------- loading
def builtin_domains() -> list[str]:
    return sorted(p.stem for p in paths.domains_dir().glob("*.yaml"))


def load_domain(name_or_path: str | Path) -> Domain:
    """A built-in domain by name (config/domains/<name>.yaml) or any domain YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = paths.domains_dir() / f"{text}.yaml"
        if not path.is_file():
            raise DomainError(
                f"unknown domain {text!r}: built-in domains are {', '.join(builtin_domains())}, "
                "or give the path of a domain YAML file"
            )
    path = path.resolve()
    try:
        data = load_yaml(path)
        data.setdefault("name", path.stem)
        spec = from_dict(DomainSpec, data, str(path))
    except DomainError:
        raise
    except ConfigError as exc:
        raise DomainError(str(exc)) from None
    return Domain(spec, path)
