"""Writing output folders without ever losing one: atomic replacement, recovery, and refusal.

A model (or backbone) folder is written beside its destination under a temporary name, marked
ready when complete, then swapped in. A process killed at any point leaves either the old folder or
the new one in place, and ``recover_folder`` (run by the next write and by every load) finishes or
undoes a swap that was cut short and removes the leftovers of dead processes.

A folder that is not Wukong's own is never replaced: ``check_output_folder`` refuses, before any
work starts, an output folder that holds other files or that contains (or lies inside) the data.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wukong.errors import BackboneNotAvailable, DataError, OutputError

if TYPE_CHECKING:
    import torch

# What a folder written by Wukong says it is, in its config.json "format".
MODEL_FORMAT = "wukong-model/1"
BACKBONE_FORMAT = "wukong-backbone/1"
# Marks a training work folder (OUT.partial) as Wukong's, so that it may be removed when done.
PARTIAL_MARKER = ".wukong-partial"

_STAGES = ("tmp", "ready", "old")


@contextlib.contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` atomically.

    On error the temporary folder is removed and any existing ``out`` is left as it was. Files
    get the permissions the umask allows (as any file the user writes), not the 0600 some writers use.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out)
    tmp = _stage(out, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        apply_umask(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ready = _stage(out, "ready")
    os.replace(tmp, ready)  # complete: from here on a recovery finishes the swap
    _swap_in(ready, out)


def _swap_in(ready: Path, out: Path) -> None:
    if out.exists() and _exchange(ready, out):  # one atomic step: never a moment without ``out``
        shutil.rmtree(ready, ignore_errors=True)  # now holds the old folder
        return
    old = _stage(out, "old")
    if out.exists():
        os.replace(out, old)
    os.replace(ready, out)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(out: str | Path) -> None:
    """Finish or undo a swap of ``out`` that a killed process left half done; remove its leftovers.

    Only the leftovers of processes that no longer run are touched (a concurrent writer keeps its own).
    """
    out = Path(out)
    if not out.parent.is_dir():
        return
    found: dict[str, list[Path]] = {stage: [] for stage in _STAGES}
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.({'|'.join(_STAGES)})(\d+)$")
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            found[match.group(1)].append(entry)
    for ready in sorted(found["ready"], key=lambda p: p.stat().st_mtime)[-1:]:
        _swap_in(ready, out)  # the newest complete folder wins
        found["ready"].remove(ready)
    if not out.exists() and found["old"]:
        os.replace(found["old"].pop(), out)  # killed between the renames: put the old folder back
    for leftover in found["tmp"] + found["ready"] + found["old"]:
        shutil.rmtree(leftover, ignore_errors=True)


def folder_format(path: Path) -> str | None:
    """The ``format`` a Wukong folder declares in its config.json, or None for any other folder."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("format") if isinstance(config, dict) else None
    return value if value in (MODEL_FORMAT, BACKBONE_FORMAT) else None


def check_output_folder(
    out: str | Path, *, fmt: str, inputs: Iterable[str | Path] = (), overwrite: bool = False
) -> None:
    """Refuse, before any work, an output folder whose replacement could lose the user's files.

    - ``out`` may not be, contain, or lie inside any of ``inputs`` (the training/validation/test data);
    - an existing ``out`` must be empty, or a Wukong folder of the same ``fmt`` with ``overwrite``;
    - its parent must be writable; ``OUT.partial`` (the work folder) must be Wukong's, if it exists.
    """
    out = Path(out)
    recover_folder(out)
    target = out.resolve()
    for given in inputs:
        data = Path(given).resolve()
        if target == data or data.is_relative_to(target):
            raise OutputError(f"--out {out}: holds the data {given}; replacing it would delete the data")
        if target.is_relative_to(data):
            raise OutputError(f"--out {out}: lies inside the data {given}; write the model outside the data folder")
    check_replaceable(out, fmt=fmt, overwrite=overwrite)
    partial = work_folder(out)
    if partial.exists() and not (partial / PARTIAL_MARKER).exists():
        raise OutputError(f"{partial}: exists and is not a Wukong work folder; move it away (Wukong works there)")
    try:  # a real write, not os.access: it answers for root, read-only mounts and full disks alike
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        blocking = next((p for p in [out.parent, *out.parent.parents] if p.is_file()), None)
        problem = f"{blocking} is a file" if blocking else exc.strerror or exc
        raise OutputError(f"--out {out}: cannot write in {out.parent} ({problem})") from None


def check_replaceable(out: str | Path, *, fmt: str, overwrite: bool) -> None:
    """``out`` may be written: it is absent or empty, or (with ``overwrite``) a Wukong folder of ``fmt``."""
    out = Path(out)
    what = "model" if fmt == MODEL_FORMAT else "backbone"
    if out.is_file() or (out.is_symlink() and not out.is_dir()):
        raise OutputError(f"--out {out}: is a file, not a folder; choose a new folder name")
    if out.is_dir() and any(out.iterdir()):
        found = folder_format(out)
        if found is None:
            count = sum(1 for _ in out.rglob("*"))
            raise OutputError(
                f"--out {out}: exists and is not a Wukong {what} folder ({count} files and folders in it); "
                "choose a new folder, Wukong replaces only its own"
            )
        if found != fmt:
            other = "model" if found == MODEL_FORMAT else "backbone"
            raise OutputError(f"--out {out}: holds a Wukong {other}, not a {what}; choose another folder")
        if not overwrite:
            raise OutputError(f"--out {out}: holds a Wukong {what} already; add --overwrite to replace it")


def work_folder(out: str | Path, *, create: bool = False) -> Path:
    """``OUT.partial``: checkpoints and logs of a run in progress, marked as Wukong's."""
    path = Path(out).with_name(Path(out).name + ".partial")
    if create:
        path.mkdir(parents=True, exist_ok=True)
        (path / PARTIAL_MARKER).touch()
    return path


def remove_work_folder(path: Path) -> None:
    """Remove ``OUT.partial`` once the model folder is written, only if Wukong marked it."""
    if (path / PARTIAL_MARKER).exists():
        shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed over ``path`` when the block
    ends (with the permissions the umask allows), removed when it fails: another process sees the
    whole file or none, and a failed write leaves the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file in one step (``atomic_file``)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: Path, *, missing: str | None = None) -> Any:
    """Parsed JSON; any problem is one ``DataError`` line naming the file (``missing``: what to say if absent)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: {missing or 'missing'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); the file is damaged or truncated") from None


def _stage(out: Path, stage: str) -> Path:
    return out.with_name(f".{out.name}.{stage}{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def apply_umask(target: Path) -> None:
    """Give ``target`` (a file, or a folder and all it holds) the permissions the umask allows."""
    umask = _umask()
    for path in [target, *(target.rglob("*") if target.is_dir() else [])]:
        mode = 0o777 if path.is_dir() else 0o666
        path.chmod(mode & ~umask)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing, truncated or non-safetensors file (a pickle, say) is one
    line naming it. Nothing is ever unpickled."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BackboneNotAvailable(f"{path}: missing")
    try:
        return load_file(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types, and OSError
        raise BackboneNotAvailable(
            f"{path}: not a readable safetensors file ({first_line(exc)}); it is damaged, truncated or "
            "another format (Wukong never unpickles)"
        ) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
