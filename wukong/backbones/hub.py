"""Can the Hugging Face hub be reached? Asked before any download, so that a machine without network
fails in seconds with advice, not after minutes of retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUE = frozenset({"1", "on", "yes", "true"})


def hub_offline() -> bool:
    """Offline mode asked for, read from the environment now (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    env = any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """False in offline mode, or when a TCP connection to the hub endpoint fails within ``timeout``."""
    if hub_offline():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False
