"""Where Wukong keeps what it can recompute: extracted archives, decoded images, features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the Wukong cache.

    The root is ``$WUKONG_CACHE`` when set, else ``$XDG_CACHE_HOME/wukong`` or ``~/.cache/wukong``.
    """
    root = os.environ.get("WUKONG_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "wukong"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
