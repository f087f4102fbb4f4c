"""The transferred network: normalisation + pretrained body (top removed, tap chosen) + new head.

Its input is a float image batch in [0, 1], NCHW: preprocessing is inside the network, so the
saved model, the ONNX export and the server all take plain pixels.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence

import torch
from torch import nn

# Where features are read (JSON-able, saved in config.json): ``None`` the top; ``k`` stage k, pooled;
# a list of those (``[3, None]``): each pooled, concatenated; ``"pixels16"``: the (normalised) input
# itself, average-pooled to 16 x 16, the no-transfer baseline that the others are measured against
# (and, in a list, raw pixels beside stages: a blend of linear classifiers, ``[4, "pixels32"]``).
Tap = int | None | list[int | None | str] | str
PIXELS = "pixels"


def tap_parts(tap: Tap) -> list[int | str | None]:
    """The parts a tap reads: itself, or each of a list's."""
    return tap if isinstance(tap, list) else [tap]


def pixel_side(tap: Tap) -> int | None:
    """The side of a raw-pixel tap (``"pixels16"`` -> 16); ``None`` for a tap into the network."""
    side = tap.removeprefix(PIXELS) if isinstance(tap, str) and tap.startswith(PIXELS) else ""
    return int(side) if side.isdigit() and int(side) > 0 else None


class FeatureExtractor(nn.Module):
    """Pooled features of a backbone, read at ``tap`` (see ``Tap``).

    Earlier stages hold more generic features (edges, textures), which transfer better to data
    unlike the pretraining set; they are global-average pooled to a vector. Several taps are read
    in one forward pass.
    """

    def __init__(self, network: nn.Module, tap: Tap = None) -> None:
        super().__init__()
        self.network = network
        self.tap = tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.parts(x)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pooled features of each part of the tap (``tap_parts``), (batch, width) each."""
        taps = tap_parts(self.tap)
        # raw pixels pooled to a side: no transfer (alone, the network is not used), or beside the
        # network's features in a blend (``strategies.features.blend_members``)
        pooled: dict[int | str | None, torch.Tensor] = {
            t: nn.functional.adaptive_avg_pool2d(x, pixel_side(t)).flatten(1) for t in taps if pixel_side(t) is not None
        }
        stages = sorted({t for t in taps if t is not None and pixel_side(t) is None})
        if not stages and None not in taps:
            maps = []
        elif None in taps and stages:
            top, maps = self.network.forward_intermediates(x, indices=stages, intermediates_only=False)
            pooled[None] = self.network.forward_head(top)
        elif None in taps:
            pooled[None], maps = self.network(x), []
        else:
            maps = self.network.forward_intermediates(x, indices=stages, intermediates_only=True, stop_early=True)
        pooled.update(zip(stages, maps, strict=True))
        parts = [pooled[t] for t in taps]
        parts = [p.mean(dim=(2, 3)) if p.ndim == 4 else p for p in parts]  # stage maps (or a user module's)
        return [p.flatten(1) for p in parts]


class TransferNet(nn.Module):
    """The one network every strategy trains: inputs -> features -> head -> logits.

    ``features`` is the pretrained body with its top removed (a ``FeatureExtractor`` over an image
    network, a sentence encoder) or ``nn.Identity()`` when the inputs are already features (a head
    trained on cached embeddings). With ``mean``/``std``, inputs are pixels (float in [0, 1], or
    uint8) normalised inside the network, so the saved model, the ONNX export and the server all
    take plain pixels.

    Frozen layers stay in inference mode: ``train()`` puts every submodule whose parameters are all
    frozen back into ``eval`` each time it is called (Lightning calls it after every validation), so
    frozen BatchNorm's running statistics are neither used per batch nor updated, and frozen dropout
    adds no noise.
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = head
        pixels = mean is not None and std is not None  # otherwise there is nothing to normalise
        self.register_buffer("mean", _channels(mean) if pixels else None)
        self.register_buffer("std", _channels(std) if pixels else None)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype == torch.uint8:  # loaders move uint8 (4x fewer bytes); scale here
            pixels = pixels.float().div_(255.0)
        return ((pixels - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(inputs) if self.mean is not None else inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(inputs))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self.features)
        return self


def _channels(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(1, -1, 1, 1)


class Embedding(nn.Module):
    """A ``TransferNet`` up to its features (no head): the frozen pass that engines export and run."""

    def __init__(self, net: TransferNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.embed(pixels)


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(trainable)


def later_blocks(network: nn.Module, count: int | str) -> list[nn.Module]:
    """The last ``count`` stages of a backbone (``"all"``: the whole network), earliest first.

    Stages come from timm's ``feature_info``; for other modules, their top-level children. What
    follows the last stage (final norms) counts with it.
    """
    if count == "all":
        return [network]
    info = getattr(network, "feature_info", None)
    names = [entry["module"] for entry in info] if info is not None else []
    modules = [network.get_submodule(n) for n in names if n] or [m for m in network.children()]
    chosen = modules[-int(count) :] if int(count) > 0 else []
    if chosen:  # anything registered after the last stage (e.g. a final norm) is trained too
        names_all = [name for name, _ in network.named_children()]
        last = next((n for n, m in network.named_children() if m is chosen[-1] or _contains(m, chosen[-1])), None)
        if last is not None:
            chosen += [network.get_submodule(n) for n in names_all[names_all.index(last) + 1 :]]
    return chosen


def _contains(parent: nn.Module, child: nn.Module) -> bool:
    return any(m is child for m in parent.modules())


def probe_features(extractor: FeatureExtractor, size: int) -> int:
    """The width of ``extractor``'s features (``probe_widths`` of its tap's parts)."""
    return sum(probe_widths(extractor.network, tap_parts(extractor.tap), size))


def probe_widths(network: nn.Module, taps: Sequence[Tap], size: int) -> list[int]:
    """The width of each tap's features, from one forward pass of a blank image for all those not
    known yet; remembered for ``network`` (while it lives) by tap and size, since its weights do not
    change them."""
    widths = _WIDTHS.setdefault(network, {})
    missing = list({repr(t): t for t in taps if (repr(t), size) not in widths}.values())
    if missing:
        extractor = FeatureExtractor(network, missing)
        with torch.no_grad():
            was_training = network.training
            network.eval()
            parts = extractor.parts(torch.zeros(1, 3, size, size))
            network.train(was_training)
        for tap, part in zip(missing, parts, strict=True):
            widths[(repr(tap), size)] = int(part.shape[1])
    return [widths[(repr(t), size)] for t in taps]


_WIDTHS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, int], int]] = weakref.WeakKeyDictionary()


def weights_fingerprint(network: nn.Module) -> str:
    """A short key that changes when the weights do (names, a sample of each tensor, its sum), and
    only then: the same weights give the same key in any memory layout.

    Remembered for each module until one of its tensors is replaced or changed in place, which
    PyTorch's version counters tell for much less than hashing: a server asks for it on every
    request (the engine is found by it)."""
    import hashlib

    stamp = _weights_stamp(network)
    known = _FINGERPRINTS.get(network)
    if stamp is not None and known is not None and known[0] == stamp:
        return known[1]
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in network.state_dict().items():
        # in one memory order whatever the tensor's layout: a channels_last copy of the same weights
        # summed in its own order gave another key (and the engines, timings and features a second time)
        values = tensor.detach().cpu().contiguous().view(-1).to(torch.float32)
        digest.update(name.encode())
        digest.update(values.numpy().tobytes()[:4096])
        digest.update(str(float(values.sum())).encode())
    fingerprint = digest.hexdigest()
    _FINGERPRINTS[network] = (stamp, fingerprint)
    return fingerprint


# weights_fingerprint's answers, while each module lives, with the stamp they were computed at.
_FINGERPRINTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int, int], ...] | None, str]] = (
    weakref.WeakKeyDictionary()
)


def _weights_stamp(network: nn.Module) -> tuple[tuple[int, int, int], ...] | None:
    """Each tensor's identity, memory and version counter (which every in-place change, an
    optimiser's step or ``load_state_dict`` included, increments); ``None`` where a tensor keeps no
    counter (one made under ``torch.inference_mode``): such weights are hashed every time."""
    tensors = itertools.chain(network.parameters(), network.buffers())
    try:
        return tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:
        return None


def keep_frozen_in_eval(module: nn.Module) -> None:
    """The one frozen-layer rule, for every network: a submodule whose parameters are all frozen stays
    in eval mode while the rest trains (BatchNorm keeps its pretrained statistics, dropout is off)."""
    for child in module.modules():
        params = list(child.parameters())
        trainable = any(p.requires_grad for p in params)
        if (params and not trainable) or (isinstance(child, nn.modules.batchnorm._BatchNorm) and not trainable):
            child.eval()
