"""A deterministic procedural image-classification dataset: ten shapes and textures.

The image recipes (ResNet-50, ViT, U-Net) need data that costs no download, is identical on every
machine and is neither trivial nor hopeless, so that the optimizers' training curves differ for
hundreds of steps. Each image holds one object of its class on a noisy background:

* five shapes (disc, ring, square, triangle, cross), drawn at a random position, size, rotation
  and (for disc and square) aspect ratio;
* five textures (horizontal, vertical and diagonal stripes, checkerboard, dots), drawn inside a
  random axis-aligned window with a random period, phase and a small orientation jitter.

Everything that is not the class is random per image and drawn the same way for every class:
foreground and background colours (uniform RGB, redrawn until they differ enough to be seen), a
smooth colour gradient over the background, Gaussian pixel noise of random strength, and in half of
the images a distractor bar in a third colour under the object. Since the two colours are drawn
symmetrically and independently of the class, no class has a different expected colour or
brightness: a classifier has to look at shape and texture.

Shapes are rendered from signed distance functions, turned into a one-pixel anti-aliased coverage,
so that the same code works from 8 px (a few blurry pixels) to 256 px and more. Rendering is
vectorised over images with numpy: per-image parameter arrays broadcast against one coordinate
grid, with a Python loop over the ten classes only (and over fixed-size chunks of images, which
keeps the float32 temporaries small enough to stay fast and bounded in memory at 224 px).

`load` generates train and val sets once and caches them as an npz file, like `builtin_tokens`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from statistics import NormalDist

import numpy as np

from lionbench.files import lionbench_cache

# Bumped whenever the generator's output changes, so that stale caches are never reused.
GENERATOR_VERSION = 1

CLASS_NAMES: tuple[str, ...] = (
    "disc",
    "ring",
    "square",
    "triangle",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "dots",
)
NUM_CLASSES = len(CLASS_NAMES)
_DISC, _RING, _SQUARE, _TRIANGLE, _CROSS, _HSTRIPES, _VSTRIPES, _DSTRIPES, _CHECKER, _DOTS = range(
    NUM_CLASSES
)
_TEXTURES = (_HSTRIPES, _VSTRIPES, _DSTRIPES, _CHECKER, _DOTS)

# Smallest Euclidean RGB distance (colours in [0, 1]) between foreground and background: enough
# to see the object through the noise, small enough that some images stay hard.
_MIN_CONTRAST = 0.4
# Pixels per rendering chunk: float32 temporaries of under 1 MB stay in cache (measured fastest).
_CHUNK_PIXELS = 1 << 16
_STRIPE_JITTER = np.deg2rad(12.0)  # orientation jitter of the stripe classes, kept well below 45°

Params = dict[str, np.ndarray]


def _draw_params(labels: np.ndarray, resolution: int, rng: np.random.Generator) -> Params:
    """Per-image nuisance parameters. Every array is drawn for every image, whatever its class,
    so the random stream (and hence each image) does not depend on how the classes fall."""
    n = len(labels)
    f32 = np.float32

    def uni(lo: float, hi: float, size: int | tuple[int, ...] = n) -> np.ndarray:
        return rng.uniform(lo, hi, size).astype(f32)

    px = 2.0 / resolution  # one pixel in image units (the image spans [-1, 1])
    is_tex = np.isin(labels, _TEXTURES)
    p: Params = {}
    # Shapes: radius r. Textures: a window of half-sizes (hx, hy).
    p["r"] = uni(0.3, 0.65)
    p["hx"] = uni(0.45, 0.95)
    p["hy"] = uni(0.45, 0.95)
    ext_x = np.where(is_tex, p["hx"], p["r"])
    ext_y = np.where(is_tex, p["hy"], p["r"])
    # Centre: the object may poke out of the image by up to a fifth of its size.
    p["cx"] = uni(-1, 1) * np.maximum(1 - 0.8 * ext_x, 0).astype(f32)
    p["cy"] = uni(-1, 1) * np.maximum(1 - 0.8 * ext_y, 0).astype(f32)
    p["aspect"] = uni(0.75, 1.0)
    p["thick"] = uni(0.25, 0.5)
    # Texture period: at least four pixels, so stripes and dots survive low resolutions.
    p["period"] = np.maximum(uni(0.18, 0.45), f32(4 * px))
    p["phase_x"] = uni(0, 1)
    p["phase_y"] = uni(0, 1)
    # Orientation: free for shapes, checkerboard and dots; near-fixed for the three stripe classes.
    free = uni(0, 2 * np.pi)
    jitter = uni(-1, 1) * f32(_STRIPE_JITTER)
    diag = np.where(rng.random(n) < 0.5, np.pi / 4, -np.pi / 4).astype(f32)
    theta = free
    theta = np.where(labels == _HSTRIPES, jitter, theta)
    theta = np.where(labels == _VSTRIPES, f32(np.pi / 2) + jitter, theta)
    theta = np.where(labels == _DSTRIPES, diag + jitter, theta)
    p["cos"] = np.cos(theta).astype(f32)
    p["sin"] = np.sin(theta).astype(f32)
    # Colours: foreground and background drawn alike, redrawn together until they differ enough.
    fg, bg = rng.random((n, 3)), rng.random((n, 3))
    bad = np.linalg.norm(fg - bg, axis=1) < _MIN_CONTRAST
    while bad.any():
        k = int(bad.sum())
        fg[bad], bg[bad] = rng.random((k, 3)), rng.random((k, 3))
        bad = np.linalg.norm(fg - bg, axis=1) < _MIN_CONTRAST
    p["fg"], p["bg"] = fg.astype(f32), bg.astype(f32)
    # Background: a linear colour gradient in a random direction, amplitude up to 0.15 a channel.
    g_angle = uni(0, 2 * np.pi)
    p["grad_x"], p["grad_y"] = np.cos(g_angle), np.sin(g_angle)
    p["grad_amp"] = uni(-0.15, 0.15, (n, 3))
    p["noise"] = uni(0.02, 0.15)
    # Distractor: a bar (capsule) in a third colour, under the object, in half of the images.
    p["distractor"] = rng.random(n) < 0.5
    p["d_col"] = uni(0, 1, (n, 3))
    d_angle = uni(0, 2 * np.pi)
    d_len = uni(0.25, 0.7)
    p["d_x0"], p["d_y0"] = uni(-0.9, 0.9), uni(-0.9, 0.9)
    p["d_dx"], p["d_dy"] = d_len * np.cos(d_angle), d_len * np.sin(d_angle)
    p["d_w"] = np.maximum(uni(0.03, 0.08), f32(0.6 * px))
    return p


@cache
def _normal_quantiles() -> np.ndarray:
    """The 2**16 mid-quantiles of N(0, 1), float32. Pixel noise is looked up here with uniform
    16-bit integers: four times faster than `standard_normal` (noise was most of the time at
    224 px) and, once scaled and rounded to 8 bits, indistinguishable from it."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / (1 << 16)) for i in range(1 << 16)], dtype=np.float32)


def _col(a: np.ndarray) -> np.ndarray:
    """Per-image values [k] as [k, 1, 1], to broadcast against [k, H, W] fields."""
    return a[:, None, None]


def _frac_centred(t: np.ndarray) -> np.ndarray:
    """Position within the current period, in [-0.5, 0.5): 0 at the middle of a stripe/cell."""
    return t - np.floor(t) - np.float32(0.5)


def _class_distance(
    c: int, p: Params, idx: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Signed distance (image units, negative inside) to class `c`'s object for images `idx`.

    `xs` [1, 1, W] and `ys` [1, H, 1] are the pixel-centre coordinates. The distances are exact or
    close to exact near the boundary, which is all the anti-aliasing needs."""
    dx = xs - _col(p["cx"][idx])
    dy = ys - _col(p["cy"][idx])
    cos, sin = _col(p["cos"][idx]), _col(p["sin"][idx])
    x = dx * cos + dy * sin  # object frame: rotated by theta about the centre
    y = dy * cos - dx * sin
    r, aspect, thick = _col(p["r"][idx]), _col(p["aspect"][idx]), _col(p["thick"][idx])
    if c == _DISC:  # an ellipse of radii r and r * aspect (approximate distance)
        return (np.sqrt(x * x + (y / aspect) ** 2) - r) * aspect
    if c == _RING:  # an annulus of outer radius r, width thick * r
        half = thick * r * np.float32(0.5)
        return np.abs(np.sqrt(x * x + y * y) - (r - half)) - half
    if c == _SQUARE:  # a rectangle, half-sides 0.8 r and 0.8 r * aspect
        s = r * np.float32(0.8)
        return np.maximum(np.abs(x) - s, np.abs(y) - s * aspect)
    if c == _TRIANGLE:  # equilateral, circumradius 1.2 r: three half-planes at the inradius
        d = None
        for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            h = x * np.float32(np.cos(a)) + y * np.float32(np.sin(a))
            d = h if d is None else np.maximum(d, h)
        return d - r * np.float32(0.6)
    if c == _CROSS:  # a plus sign: arms of half-length 0.95 r, half-width 0.6 * thick * r
        a, b = r * np.float32(0.95), thick * r * np.float32(0.6)
        ax, ay = np.abs(x), np.abs(y)
        return np.minimum(np.maximum(ax - a, ay - b), np.maximum(ax - b, ay - a))
    # Textures: a pattern in the rotated frame, cut by an axis-aligned window around the centre.
    period = _col(p["period"][idx])
    window = np.maximum(np.abs(dx) - _col(p["hx"][idx]), np.abs(dy) - _col(p["hy"][idx]))
    ty = _frac_centred(y / period + _col(p["phase_y"][idx])) * period
    if c in (_HSTRIPES, _VSTRIPES, _DSTRIPES):  # stripes of half the period, along the x axis
        d = np.abs(ty) - period * np.float32(0.25)
    else:
        tx = _frac_centred(x / period + _col(p["phase_x"][idx])) * period
        if c == _CHECKER:  # inside where the two half-period square waves agree
            d = np.minimum(np.abs(tx), np.abs(ty))
            d = np.where(tx * ty > 0, -d, d)
        else:  # _DOTS: a dot of radius 0.28 period in every cell
            d = np.sqrt(tx * tx + ty * ty) - period * np.float32(0.28)
    return np.maximum(d, window)


def _coverage(d: np.ndarray, resolution: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance: a linear ramp one pixel wide."""
    d *= np.float32(-resolution / 2)  # minus distance in pixels
    d += np.float32(0.5)
    return np.clip(d, 0, 1, out=d)


def _render(p: Params, labels: np.ndarray, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Images [k, 3, H, W] as uint8 for one chunk of images (parameters and labels sliced)."""
    k, f32 = len(labels), np.float32
    coords = ((np.arange(resolution, dtype=f32) + f32(0.5)) * f32(2 / resolution) - 1).astype(f32)
    xs, ys = coords[None, None, :], coords[None, :, None]
    # Background: flat colour plus a linear gradient, per channel.
    ramp = xs * _col(p["grad_x"]) + ys * _col(p["grad_y"])  # [k, H, W]
    img = p["bg"][:, :, None, None] + p["grad_amp"][:, :, None, None] * ramp[:, None]
    # Distractor bar, under the object: distance to a segment minus its half-width.
    (di,) = np.nonzero(p["distractor"])
    if len(di):
        x0, y0 = _col(p["d_x0"][di]), _col(p["d_y0"][di])
        sx, sy = _col(p["d_dx"][di]), _col(p["d_dy"][di])
        rx, ry = xs - x0, ys - y0
        h = np.clip((rx * sx + ry * sy) / (sx * sx + sy * sy), 0, 1)
        rx, ry = rx - h * sx, ry - h * sy
        alpha = _coverage(np.sqrt(rx * rx + ry * ry) - _col(p["d_w"][di]), resolution)
        sub = img[di]
        sub += (p["d_col"][di][:, :, None, None] - sub) * alpha[:, None]
        img[di] = sub
    # The object: one signed distance field per class present in the chunk.
    alpha = np.empty((k, resolution, resolution), dtype=f32)
    for c in range(NUM_CLASSES):
        (idx,) = np.nonzero(labels == c)
        if len(idx):
            alpha[idx] = _coverage(_class_distance(c, p, idx, xs, ys), resolution)
    img += (p["fg"][:, :, None, None] - img) * alpha[:, None]
    noise = np.take(_normal_quantiles(), rng.integers(0, 1 << 16, img.shape, dtype=np.uint16))
    noise *= p["noise"][:, None, None, None]
    img += noise
    img *= f32(255)
    img += f32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def generate(n: int, resolution: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` images [n, 3, resolution, resolution] uint8 (channels first) and labels [n] int64.

    Labels are balanced (counts differ by at most one) and shuffled by `rng`; everything else about
    an image is drawn from `rng` too, so the output is a pure function of the generator's state."""
    if n < 0 or resolution < 1:
        raise ValueError(f"need n >= 0 and resolution >= 1, got n={n}, resolution={resolution}")
    labels = rng.permutation(np.arange(n, dtype=np.int64) % NUM_CLASSES)
    params = _draw_params(labels, resolution, rng)
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // (resolution * resolution))
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        chunk = {key: value[sl] for key, value in params.items()}
        images[sl] = _render(chunk, labels[sl], resolution, rng)
    return images, labels


@dataclass
class BuiltinImages:
    train_x: np.ndarray  # [n_train, 3, resolution, resolution] uint8
    train_y: np.ndarray  # [n_train] int64 in [0, NUM_CLASSES)
    val_x: np.ndarray  # [n_val, 3, resolution, resolution] uint8
    val_y: np.ndarray  # [n_val] int64
    info: dict


def cache_dir() -> Path:
    return lionbench_cache("builtin_images")


def _stream(seed: int, part: int) -> np.random.Generator:
    """Independent generators for train (part 0) and val (part 1) of the same seed."""
    return np.random.Generator(np.random.PCG64([seed, part]))


def load(resolution: int, n_train: int, n_val: int, seed: int) -> BuiltinImages:
    """Train and val images, generated once and cached on disk.

    Train and val come from independent streams of `seed`, so the val set (what every run and
    optimizer is scored on) is the same whatever the size of the training set."""
    key = json.dumps([GENERATOR_VERSION, resolution, n_train, n_val, seed])
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    shape = (3, resolution, resolution)
    if path.exists():
        try:
            with np.load(path) as z:
                out = BuiltinImages(
                    z["train_x"], z["train_y"], z["val_x"], z["val_y"], json.loads(str(z["info"]))
                )
            if out.train_x.shape != (n_train, *shape) or out.val_x.shape != (n_val, *shape):
                raise ValueError(f"{path} holds other shapes")
            return out
        except Exception:  # a torn, empty or foreign cache file: make it again
            path.unlink(missing_ok=True)
    train_x, train_y = generate(n_train, resolution, _stream(seed, 0))
    val_x, val_y = generate(n_val, resolution, _stream(seed, 1))
    info = {
        "class_names": list(CLASS_NAMES),
        "num_classes": NUM_CLASSES,
        "generator_version": GENERATOR_VERSION,
        "resolution": resolution,
        "seed": seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(
            tmp, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, info=json.dumps(info)
        )
        os.replace(tmp, path)
    except BaseException:  # never leave a half-written temporary behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return BuiltinImages(train_x, train_y, val_x, val_y, info)
