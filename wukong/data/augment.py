"""Tensor datasets over decoded images, with the training augmentation done per sample on uint8."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F


class ArrayImageDataset(Dataset):
    """Images from a (N, S, S, 3) uint8 array, returned as (3, size, size) uint8 tensors.

    ``train=True`` applies random resized crop (area ``scale``, aspect 3/4..4/3) and horizontal
    flip; otherwise the centre ``size`` crop of the stored square (resized when sizes differ).
    ``size`` may change between epochs (progressive resizing).
    """

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        size: int,
        *,
        train: bool,
        scale: tuple[float, float] = (0.35, 1.0),
        crop_pct: float = 1.0,
    ) -> None:
        self.pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # a view: no copy
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.size = size
        self.train = train
        self.scale = scale
        self.crop_pct = crop_pct

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.pixels[index]
        if self.train:
            top, left, h, w = _random_box(image.shape[-2], image.shape[-1], self.scale)
            image = F.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
            if random.random() < 0.5:
                image = F.horizontal_flip(image)
        else:
            side = image.shape[-1]
            crop = round(side * self.crop_pct)
            if crop != side:
                image = F.center_crop(image, [crop, crop])
            if crop != self.size:
                image = F.resize(image, [self.size, self.size], antialias=True)
        return image.contiguous(), self.labels[index]


def _random_box(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * random.uniform(*scale)
        ratio = math.exp(random.uniform(*log_ratio))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    return 0, 0, height, width


def normalize_batch(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> normalised float32, channels_last (fast convolutions on CPU)."""
    x = images.float().div_(255.0)
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return x.contiguous(memory_format=torch.channels_last)
