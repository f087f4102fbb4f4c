"""Nothing lost, nothing hidden: output folders, early checks, recoverable swaps, bad files reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wukong.artifact_io import MODEL_FORMAT, atomic_folder, check_output_folder, recover_folder, work_folder
from wukong.errors import DataError, OutputError

from .conftest import CAT_DOG

CMD = [sys.executable, "-m", "wukong.cli"]
FAST = ["--backbone", "wukong_resnet18_s_tiny"]


def run(*args: str | Path, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr[-2000:]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    shutil.copytree(CAT_DOG, tmp_path / "data")
    return tmp_path / "data"


# --- 1. --out never deletes what is not Wukong's ---------------------------------------------------


def test_out_naming_the_data_folder_is_refused_and_the_data_survives(data: Path) -> None:
    before = files_of(data)
    result = run("train", data / "train", "--test", data / "test", "--out", data, *FAST)
    one_line_error(result, "holds the data")
    assert files_of(data) == before


@pytest.mark.parametrize(
    ("relative", "fragment"),
    [(".", "holds the data"), ("train", "holds the data"), ("train/cat/model", "lies inside the data")],
)
def test_out_inside_or_around_any_input_is_refused(data: Path, relative: str, fragment: str) -> None:
    with pytest.raises(OutputError, match=fragment):
        check_output_folder(data / relative, fmt=MODEL_FORMAT, inputs=[data / "train", data / "test"])


def test_a_folder_of_the_users_own_files_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    (mine / "sub" / "data.csv").write_text("a,b\n")
    before = files_of(mine)
    with pytest.raises(OutputError, match="not a Wukong model folder"):
        check_output_folder(mine, fmt=MODEL_FORMAT, overwrite=True)
    result = run("train", CAT_DOG / "train", "--out", mine, "--overwrite", *FAST)
    one_line_error(result, "not a Wukong model folder")
    assert files_of(mine) == before


def test_a_model_folder_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert run("train", CAT_DOG / "train", "--out", out, "--quiet", *FAST).returncode == 0
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    one_line_error(run("train", CAT_DOG / "train", "--out", out, *FAST), "add --overwrite")
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    result = run("train", CAT_DOG / "train", "--out", out, "--overwrite", "--seed", "3", *FAST)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["params"]["seed"] == 3
    assert not work_folder(out).exists()


def test_a_work_folder_that_is_not_wukongs_is_left_alone(tmp_path: Path) -> None:
    partial = tmp_path / "model.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a Wukong work folder"):
        check_output_folder(tmp_path / "model", fmt=MODEL_FORMAT)
    assert (partial / "notes.txt").read_text() == "mine"


def test_python_save_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    import wukong

    model = wukong.ImageClassifier("wukong_resnet18_s_tiny", strategy="features", progress=False)
    model.fit(CAT_DOG / "train")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(OutputError):
        model.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    model.save(tmp_path / "m")
    with pytest.raises(OutputError, match="overwrite"):
        model.save(tmp_path / "m", overwrite=False)


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_out_is_refused_before_training(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "model" if where == "file" else Path("/proc/wukong-no-such/model")
    result = run("train", CAT_DOG / "train", "--out", out, *FAST)
    one_line_error(result, "cannot write in")


def test_a_full_disk_during_save_is_one_line_and_replaces_nothing(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes every large write fail as a full disk does (EFBIG/ENOSPC)."""
    out = tmp_path / "model"
    assert run("train", CAT_DOG / "train", "--out", out, "--quiet", *FAST).returncode == 0
    before = files_of(out)
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000));"
        "sys.argv = ['wukong'] + sys.argv[1:]; from wukong.cli import main; main()"
    )
    args = ["train", CAT_DOG / "train", "--out", out, "--overwrite", "--seed", "2", *FAST]
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    one_line_error(result, "could not be written")
    assert files_of(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]


# --- 2. every input checked before training; what shows up later keeps the model -----------------------


def test_a_test_set_with_an_unknown_class_stops_before_training(data: Path, tmp_path: Path) -> None:
    (data / "test" / "bird").mkdir()
    shutil.copy(next((data / "test" / "cat").glob("*.jpg")), data / "test" / "bird" / "b.jpg")
    out = tmp_path / "model"
    result = run("train", data / "train", "--test", data / "test", "--out", out, *FAST)
    one_line_error(result, "['bird'] are not among the training classes")
    assert not out.exists() and not work_folder(out).exists()


def test_a_test_set_found_unusable_after_training_keeps_the_model(data: Path, tmp_path: Path) -> None:
    for image in (data / "test").rglob("*.jpg"):
        image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "model"
    result = run("train", data / "train", "--test", data / "test", "--out", out, *FAST)
    one_line_error(result, f"the model is written to {out}")
    assert "no usable example" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "no usable example" in metrics["test_error"] and metrics["val_accuracy"] is not None


# --- 3. the swap of a finished folder is recoverable ----------------------------------------------------


def make_folder(path: Path, tag: str) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"format": MODEL_FORMAT, "tag": tag}))


def tag_of(path: Path) -> str:
    return json.loads((path / "config.json").read_text())["tag"]


def test_killed_between_the_renames_the_old_folder_comes_back(tmp_path: Path) -> None:
    out = tmp_path / "m"
    pid = dead_pid()
    make_folder(tmp_path / f".m.old{pid}", "old")
    make_folder(tmp_path / f".m.tmp{pid}", "half-written")
    recover_folder(out)
    assert tag_of(out) == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_complete_new_folder_left_ready_is_swapped_in(tmp_path: Path) -> None:
    out = tmp_path / "m"
    make_folder(out, "old")
    make_folder(tmp_path / f".m.ready{dead_pid()}", "new")
    recover_folder(out)
    assert tag_of(out) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_live_writers_folders_are_not_touched(tmp_path: Path) -> None:
    out = tmp_path / "m"
    make_folder(out, "old")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        make_folder(tmp_path / f".m.tmp{live.pid}", "busy")
        recover_folder(out)
        assert (tmp_path / f".m.tmp{live.pid}").exists() and tag_of(out) == "old"
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("die_after", [0, 1, 2])
def test_a_process_killed_at_any_rename_leaves_a_loadable_folder(tmp_path: Path, die_after: int) -> None:
    """A real process dies (os._exit, no clean-up) after 0, 1 or 2 of its renames; the next reader recovers."""
    out = tmp_path / "m"
    make_folder(out, "old")
    code = f"""
import json, os, sys
from pathlib import Path
import wukong.artifact_io as io
real, calls = os.replace, []
def dying(a, b):
    if len(calls) == {die_after}:
        os._exit(9)
    calls.append(a)
    real(a, b)
io.os.replace = dying
io._exchange = lambda a, b: False  # the two-rename path, where the window was
with io.atomic_folder(Path({str(out)!r})) as tmp:
    (tmp / "config.json").write_text(json.dumps({{"format": "{MODEL_FORMAT}", "tag": "new"}}))
"""
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    recover_folder(out)
    assert tag_of(out) == ("old" if die_after == 0 else "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_the_atomic_swap_replaces_in_one_step(tmp_path: Path) -> None:
    out = tmp_path / "m"
    make_folder(out, "old")
    with atomic_folder(out) as tmp:
        (tmp / "config.json").write_text(json.dumps({"format": MODEL_FORMAT, "tag": "new"}))
    assert tag_of(out) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert oct((out / "config.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
