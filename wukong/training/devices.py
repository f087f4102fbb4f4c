"""The device options of a training (``--accelerator``, ``--devices``, ``--num-nodes``,
``--num-workers``), checked without importing PyTorch or Lightning: a wrong option is a one-line
error at once, not after seconds of imports."""

from __future__ import annotations

from wukong.errors import ParameterError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def check_hardware(accelerator: str, devices: int | str, num_nodes: int, num_workers: int | None) -> None:
    """A one-line ``ParameterError`` for a device option Lightning would refuse, before any data is read."""
    if accelerator not in ACCELERATORS:
        raise ParameterError(f"accelerator={accelerator!r}: choose one of {', '.join(ACCELERATORS)}")
    if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)):
        raise ParameterError(f"devices={devices!r}: give a number of devices (1 or more) or 'auto'")
    if not (isinstance(num_nodes, int) and num_nodes >= 1):
        raise ParameterError(f"num_nodes={num_nodes!r}: give a number of machines, 1 or more")
    if num_workers is not None and not (isinstance(num_workers, int) and num_workers >= 0):
        raise ParameterError(f"num_workers={num_workers!r}: give a number of loader processes (0 or more) or None")
