"""Tensor datasets over decoded images, with the training augmentation done per sample on uint8."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from wukong.data.decode import BadImage

# The label of an image that could not be decoded any more (streamed images only): left out of the loss.
UNREADABLE = -100


class ArrayImageDataset(Dataset):
    """Images from a (N, S, S, 3) uint8 array, returned as (3, size, size) uint8 tensors.

    Streamed images (``wukong.data.streamed``) are decoded here and returned with their index,
    ``(image, label, index)``; one that cannot be decoded now comes with every label ``UNREADABLE``.

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
        self.streamed = not isinstance(pixels, np.ndarray)  # ``wukong.data.streamed.StreamedPixels``
        self.pixels = pixels if self.streamed else torch.from_numpy(pixels).permute(0, 3, 1, 2)  # a view: no copy
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.size = size
        self.train = train
        self.scale = scale
        self.crop_pct = crop_pct

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if not self.streamed:
            return self._sample(self.pixels[index], index)
        try:  # decoded here, in a loader's worker
            image = torch.from_numpy(self.pixels.decode(index)).permute(2, 0, 1)
        except BadImage:  # unusable since it was listed: marked for the consumer to leave out and report
            label = torch.full_like(self.labels[index], UNREADABLE)
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), label, torch.tensor(index)
        return *self._sample(image, index), torch.tensor(index)

    def _sample(self, image: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def random_resized_crop_batch(
    images: torch.Tensor,
    size: int,
    *,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Random resized crop + horizontal flip of a whole batch at once, on the batch's device.

    ``images`` is uint8 or float (N, 3, H, W); the result is float32 (N, 3, size, size) in the
    input's value range. One affine sampling grid per image (crop box, aspect, mirror) and a single
    ``grid_sample``: on a GPU this keeps augmentation off the CPU, which would otherwise starve it.
    """
    n = images.shape[0]
    device = images.device
    area = torch.empty(n, device=device).uniform_(*scale)
    aspect = torch.empty(n, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1])).exp()
    width = (area * aspect).sqrt().clamp(max=1.0)  # crop side as a fraction of the image side
    height = (area / aspect).sqrt().clamp(max=1.0)
    # crop centre in grid_sample's [-1, 1] coordinates, anywhere that keeps the box inside
    centre_x = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
    mirror = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=device)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = torch.nn.functional.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return torch.nn.functional.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class ArrayBatches(Dataset):
    """A (N, S, S, 3) uint8 array served a batch at a time: ``dataset[list_of_indices]``.

    Used with ``DataLoader(batch_size=None, sampler=BatchSampler(...))``: one fancy-index per batch
    instead of a Python call per image, so that a GPU doing the augmentation is never waiting.
    """

    def __init__(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        self.pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # a view: no copy
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.pixels[index].contiguous(), self.labels[index]

    def loader(
        self, batch_size: int, *, shuffle: bool, drop_last: bool = False, num_workers: int = 0
    ) -> torch.utils.data.DataLoader:
        from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

        order = RandomSampler(self) if shuffle else SequentialSampler(self)
        sampler = BatchSampler(order, batch_size, drop_last=drop_last)
        how = {"num_workers": num_workers, "persistent_workers": num_workers > 0}
        return DataLoader(self, batch_size=None, sampler=sampler, pin_memory=torch.cuda.is_available(), **how)
