"""Image tasks like and unlike the pretraining data (ImageNet photos), for ``benchmarks/auto.py``.

Each task is written as PNG class folders: ``<root>/pool/<class>/`` (the images training samples are
drawn from) and ``<root>/test/<class>/``. What is here:

- ``cifar10``: natural photos (32x32), like the pretraining data; ``../shared/data/cifar10.tar.gz``.
- ``digits``: scikit-learn's bundled handwritten digits (1,797 scans of 8x8 greyscale, UCI), drawn
  as 32x32 dark-on-light images: scans, greyscale, nothing like a photo (Ng's example of data
  unlike ImageNet).
- ``shapes``: synthetic drawings: six kinds of outline or filled shape at a random place, size and
  colour on a noisy background.
- ``textures``: synthetic textures: six kinds of periodic or random pattern at a random scale, phase
  and pair of colours. Every class is mirror-symmetric as a class (``features`` adds mirror images).

Example:
    >>> root = digits(Path("/tmp/wk-digits"), pool=5, test=5)   # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
SIDE = 64


def _write(root: Path, split: str, label: str, index: int, image: Image.Image) -> None:
    folder = root / split / label
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / f"{label}_{index}.png")


def digits(root: Path, *, pool: int, test: int, seed: int = 0) -> Path:
    """``pool`` and ``test`` scans per digit (scikit-learn has about 180 per digit)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    seen: dict[int, int] = {}
    for i in order:
        label = int(data.target[i])
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > pool + test:
            continue
        split = "pool" if seen[label] <= pool else "test"
        pixels = (255 - data.images[i] / 16 * 255).astype(np.uint8)
        _write(root, split, str(label), int(i), Image.fromarray(pixels).resize((32, 32), Image.BILINEAR))
    return root


def cifar10(root: Path, *, pool: int, test: int, seed: int = 0) -> Path:
    """The first ``pool`` training and ``test`` test photos of each CIFAR-10 class."""
    from exports import cifar_subset  # one way to cut CIFAR-10, shared with exports.py

    cifar_subset(root, pool, test)
    (root / "train").rename(root / "pool")
    return root


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two colours far enough apart to see."""
    while True:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if np.abs(a - b).sum() > 200:
            return tuple(int(v) for v in a), tuple(int(v) for v in b)


def _noisy(image: Image.Image, rng: np.random.Generator, amount: float = 12.0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, amount, (SIDE, SIDE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _shape(kind: str, rng: np.random.Generator) -> Image.Image:
    back, fore = _colours(rng)
    image = Image.new("RGB", (SIDE, SIDE), back)
    draw = ImageDraw.Draw(image)
    r = rng.uniform(10, 24)
    cx, cy = rng.uniform(r + 2, SIDE - r - 2, 2)
    width = int(rng.integers(2, 5))
    if kind == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fore)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fore, width=width)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fore)
    elif kind == "frame":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline=fore, width=width)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fore)
    else:  # cross
        draw.line([(cx - r, cy), (cx + r, cy)], fill=fore, width=width + 2)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=fore, width=width + 2)
    return _noisy(image, rng)


def _texture(kind: str, rng: np.random.Generator) -> Image.Image:
    a, b = (np.asarray(c, dtype=np.float32) for c in _colours(rng))
    period = rng.uniform(5, 14)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) + rng.uniform(0, period, 2)[:, None, None]
    if kind == "horizontal":
        mix = np.sin(2 * np.pi * y / period) > 0
    elif kind == "vertical":
        mix = np.sin(2 * np.pi * x / period) > 0
    elif kind == "checks":
        mix = (np.sin(2 * np.pi * x / period) > 0) ^ (np.sin(2 * np.pi * y / period) > 0)
    elif kind == "dots":
        mix = np.hypot((x % period) - period / 2, (y % period) - period / 2) < period / 4
    elif kind == "rings":
        c = rng.uniform(0, SIDE, 2)
        mix = np.sin(2 * np.pi * np.hypot(x - c[0], y - c[1]) / period) > 0
    else:  # blobs: smoothed noise, thresholded
        noise = rng.normal(size=(SIDE // 8 + 2, SIDE // 8 + 2))
        big = np.asarray(Image.fromarray(noise.astype(np.float32)).resize((SIDE, SIDE), Image.BICUBIC))
        mix = big > 0
    pixels = np.where(mix[..., None], a, b)
    return _noisy(Image.fromarray(pixels.astype(np.uint8)), rng)


def _synthetic(draw: Callable[[str, np.random.Generator], Image.Image], kinds: tuple[str, ...]):  # noqa: ANN202
    def build(root: Path, *, pool: int, test: int, seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        for kind in kinds:
            for i in range(pool + test):
                _write(root, "pool" if i < pool else "test", kind, i, draw(kind, rng))
        return root

    return build


shapes = _synthetic(_shape, ("disc", "ring", "square", "frame", "triangle", "cross"))
textures = _synthetic(_texture, ("horizontal", "vertical", "checks", "dots", "rings", "blobs"))


def cipher(texts: list[str], seed: int = 0) -> list[str]:
    """Texts in a seeded letter-substitution cipher (lower case): a text task unlike the encoder's
    pretraining data, whose words and n-grams are those of the plain texts."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(letters, "".join(np.random.default_rng(seed).permutation(list(letters))))
    return [t.lower().translate(table) for t in texts]


TASKS = {"cifar10": cifar10, "digits": digits, "shapes": shapes, "textures": textures}
LIKE_PRETRAINING = {"cifar10": True, "digits": False, "shapes": False, "textures": False}


def sample(pool: Path, per_class: int, seed: int, out: Path) -> Path:
    """``per_class`` images of each class of ``pool``, drawn with ``seed``, copied (hard-linked) to ``out``."""
    rng = np.random.default_rng(seed)
    for folder in sorted(p for p in pool.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        for file in rng.choice(files, per_class, replace=False):
            target = out / folder.name / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(file, target)
    return out
