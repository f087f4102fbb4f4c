"""Resizing a decoded image to the square a network takes: the shorter side to ``size``, then the
centred ``size x size`` crop, as torchvision's ``Resize`` + ``CenterCrop`` do.

Bilinear and bicubic go through torchvision's antialiased uint8 kernel, Pillow's filters in
vectorised form (the same pixels within two levels of 255 as ``pillow_resize_square``, several times
faster: the resize, not the JPEG decode, was most of a photo's cost); nearest and Lanczos through
Pillow. ``benchmarks/throughput.py`` times the two (``decoding_steps_cat_dog``).

Example:
    >>> from PIL import Image
    >>> resize_square(Image.new("RGB", (640, 480)), 224).shape
    (224, 224, 3)
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

_PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
TORCH_INTERPOLATION = ("bilinear", "bicubic")  # the filters torchvision's uint8 kernel has (its names too)


def resize_square(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """``image`` resized and centre-cropped to uint8 ``(size, size, 3)``."""
    if interpolation not in TORCH_INTERPOLATION:
        return pillow_resize_square(image, size, interpolation)
    rgb = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # writable, as torch wants
    return resize_rgb(torch.from_numpy(rgb), size, interpolation)


def resize_rgb(rgb: torch.Tensor, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """A uint8 ``(H, W, 3)`` tensor resized by torchvision (bilinear or bicubic) and centre-cropped
    to uint8 ``(size, size, 3)``. Channels last in memory is the layout its fast uint8 kernel takes."""
    height, width = rgb.shape[:2]
    new_w, new_h, left, top = _square_geometry((width, height), size)
    out = F.resize(rgb.permute(2, 0, 1), [new_h, new_w], interpolation=InterpolationMode(interpolation), antialias=True)
    return out[:, top : top + size, left : left + size].permute(1, 2, 0).contiguous().numpy()


def pillow_resize_square(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """``resize_square`` done by Pillow's own resize, then the crop: a writable uint8 (size, size, 3)."""
    new_w, new_h, left, top = _square_geometry(image.size, size)
    resample = _PILLOW_FILTERS.get(interpolation, Image.Resampling.BICUBIC)
    image = image.resize((new_w, new_h), resample=resample, reducing_gap=3.0)
    return np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)  # writable copy


def _square_geometry(image_size: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(width, height) with the shorter side resized to ``size``, and the (left, top) of the centred square."""
    w, h = image_size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2
