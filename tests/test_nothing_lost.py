"""Nothing lost, nothing hidden: output folders, early checks, recoverable swaps, bad files reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wukong.artifact_io import MODEL_FORMAT, atomic_folder, check_output_folder, recover_folder, work_folder
from wukong.errors import DataError, OutputError

from .conftest import CAT_DOG, FAST_BACKBONE

CMD = [sys.executable, "-m", "wukong.cli"]
FAST = ["--backbone", FAST_BACKBONE]


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

    model = wukong.ImageClassifier(FAST_BACKBONE, strategy="features", progress=False)
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


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
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
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
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


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
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


# --- 4. hidden problems in image folders are reported or stop with a line --------------------------------


def test_an_empty_class_folder_stops_with_its_name(data: Path) -> None:
    from wukong.data.images import read_image_source

    (data / "train" / "bird").mkdir()
    with pytest.raises(DataError, match="bird: class folder with no image file"):
        read_image_source(data / "train")


def test_a_class_folder_linking_to_the_data_root_stops(data: Path) -> None:
    from wukong.data.images import read_image_source

    (data / "train" / "everything").symlink_to(data / "train")
    with pytest.raises(DataError, match="a link to the data folder itself"):
        read_image_source(data / "train")


def test_broken_and_looping_links_are_reported(data: Path) -> None:
    from wukong.data.images import read_image_source

    cat = data / "train" / "cat"
    (cat / "gone.jpg").symlink_to(data / "no-such.jpg")
    (cat / "a.jpg").symlink_to(cat / "b.jpg")
    (cat / "b.jpg").symlink_to(cat / "a.jpg")
    reasons = {Path(s.path).name: s.reason for s in read_image_source(data / "train").skipped}
    assert reasons == {
        "gone.jpg": "broken symbolic link (target missing)",
        "a.jpg": "symbolic link loop",
        "b.jpg": "symbolic link loop",
    }


def test_the_same_image_under_two_classes_is_left_out_and_reported(data: Path) -> None:
    import wukong

    twin = next((data / "train" / "cat").glob("*.jpg"))
    shutil.copy(twin, data / "train" / "dog" / "twin.jpg")
    model = wukong.ImageClassifier(FAST_BACKBONE, strategy="features", progress=False)
    model.fit(data / "train")
    clashes = {Path(s["path"]).name: s["reason"] for s in model.skipped_ if "contradictory" in s["reason"]}
    assert set(clashes) == {twin.name, "twin.jpg"}
    assert "'dog'" in clashes[twin.name] and "'cat'" in clashes["twin.jpg"]
    assert sum(model.metrics_["train_examples"].values()) + model.metrics_["val_examples"] == 40 - 1


def test_a_huge_file_is_skipped_without_being_read(tmp_path: Path) -> None:
    from wukong.data.decode import decode_images

    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:  # sparse: 1 GB on paper, nothing on disk
        fh.truncate(1024**3)
    store = decode_images([huge, CAT_DOG / "test" / "cat" / "cat.983.jpg"], 64)
    assert len(store) == 1 and "over the 537 MB limit for one image" in store.skipped[0].reason


# --- 5. text: per-row decoding, merged rows, image CSVs in other encodings -------------------------------


def test_one_bad_byte_run_costs_one_row_not_the_file(tmp_path: Path) -> None:
    from wukong.data.text import read_text_table

    table = tmp_path / "t.csv"
    table.write_bytes(
        "text,label\ncafé au lait,drink\nna\xefve question,other\nthé vert,drink\n".encode().replace(
            "na\xefve".encode(), b"na\xefve"
        )
    )
    source = read_text_table(table)
    assert source.texts == ["café au lait", "naïve question", "thé vert"]
    assert source.encoding == "utf-8 (1 line cp1252)"
    assert [(s.path, s.kept) for s in source.skipped] == [(f"{table}:3", True)]


def test_a_quote_left_open_is_reported_not_silently_merged(tmp_path: Path) -> None:
    from wukong.data.text import read_text_table

    table = tmp_path / "t.csv"
    table.write_text('text,label\ngood film,pos\nbad film,neg\n"unclosed start,neg\nfine film,pos\nawful,neg\n')
    source = read_text_table(table)
    assert source.texts == ["good film", "bad film"]
    [merged] = source.skipped
    assert merged.path == f"{table}:4" and "lines 4-6 were read as one row" in merged.reason and not merged.kept


def test_an_image_csv_in_latin1_is_read(tmp_path: Path) -> None:
    from wukong.data.images import read_image_source

    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted((CAT_DOG / "train").rglob("*.jpg"))]
    rows[1] = rows[1].replace(",cat", ",chat\xe9")  # one label in latin-1
    table = tmp_path / "images.csv"
    table.write_bytes("\n".join(rows).encode("latin-1"))
    source = read_image_source(table)
    assert "chaté" in source.classes and len(source) == 40


# --- 6. predict fails when nothing could be predicted -----------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("m") / "model"
    result = run("train", CAT_DOG / "train", "--out", out, "--quiet", *FAST)
    assert result.returncode == 0, result.stderr
    return out


def test_predict_with_no_usable_input_exits_non_zero(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    result = run("predict", model_dir, tmp_path / "a.jpg", tmp_path / "b.png")
    one_line_error(result, "none of the 2 input(s) could be predicted")
    assert "a.jpg\tskipped" in result.stdout


def test_predict_on_an_empty_folder_names_it(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("predict", model_dir, tmp_path / "empty")
    one_line_error(result, f"{tmp_path / 'empty'}: no image files found")


# --- 8-9. damaged or tampered model folders: one line naming the file -------------------------------------


def tamper(model_dir: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    change(copy)
    return copy


def set_config(key_path: list[str], value) -> callable:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        node = config
        for key in key_path[:-1]:
            node = node[key]
        node[key_path[-1]] = value
        (folder / "config.json").write_text(json.dumps(config))

    return change


PICKLE = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."


@pytest.mark.parametrize(
    ("name", "change", "fragment"),
    [
        (
            "config truncated",
            lambda f: (f / "config.json").write_text('{"format": "wukong-mo'),
            "config.json: not valid JSON",
        ),
        ("config empty", lambda f: (f / "config.json").write_text(""), "config.json: empty file"),
        ("weights missing", lambda f: (f / "model.safetensors").unlink(), "model.safetensors: missing"),
        (
            "weights truncated",
            lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
            "model.safetensors: not a readable safetensors file",
        ),
        ("pickle as weights", lambda f: (f / "model.safetensors").write_bytes(PICKLE), "never unpickles"),
        ("metrics broken", lambda f: (f / "metrics.json").write_text("{nope"), "metrics.json: not valid JSON"),
        (
            "checkpoint_path in spec",
            set_config(["backbone", "source", "spec", "kwargs", "checkpoint_path"], "/etc/passwd"),
            "option checkpoint_path='/etc/passwd' is not allowed",
        ),
        (
            "pretrained in spec",
            set_config(["backbone", "source", "spec", "kwargs", "pretrained"], True),
            "is not allowed",
        ),
        (
            "unknown architecture",
            set_config(["backbone", "source", "spec", "timm_name"], "os.system"),
            "not a timm architecture",
        ),
        ("a class too many", set_config(["classes"], ["cat", "dog", "bird"]), "lists 3 classes but the head has 2"),
        ("classes not names", set_config(["classes"], [1, 2]), "'classes' must be a list"),
        ("bad mean", set_config(["backbone", "data_config", "mean"], "x"), "mean and std"),
        ("bad tap", set_config(["tap"], "os"), "tap 'os'"),
        ("bad tap list", set_config(["tap"], [0, 99]), "tap [0, 99] must be"),
        ("bad pixel tap", set_config(["tap"], "pixelsx"), "tap 'pixelsx' must be"),
        ("unknown modality", set_config(["modality"], "audio"), "unknown modality 'audio'"),
        ("wrong format", set_config(["format"], "other/1"), "not a Wukong model config"),
    ],
)
def test_a_damaged_model_folder_is_one_line(model_dir: Path, tmp_path: Path, name: str, change, fragment: str) -> None:
    import wukong

    folder = tamper(model_dir, tmp_path, change)
    with pytest.raises(DataError, match=None) as caught:
        wukong.load(folder)
    assert fragment in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert str(folder) in str(caught.value)


def test_a_damaged_folder_from_the_command_line(model_dir: Path, tmp_path: Path) -> None:
    folder = tamper(model_dir, tmp_path, lambda f: (f / "model.safetensors").write_bytes(PICKLE))
    one_line_error(run("predict", folder, CAT_DOG / "test" / "cat" / "cat.983.jpg"), "never unpickles")


def test_a_pickle_behind_a_safetensors_name_or_in_a_backbone_folder_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "x.safetensors"
    weights.write_bytes(PICKLE)
    one_line_error(
        run("train", CAT_DOG / "train", "--out", tmp_path / "m", "--backbone", weights, "--arch", "resnet18"),
        "never unpickles",
    )
    from wukong.backbones.vision import embedded_folder

    backbone = tmp_path / "bb"
    shutil.copytree(embedded_folder(), backbone)
    (backbone / "model.safetensors").write_bytes(PICKLE)
    one_line_error(run("train", CAT_DOG / "train", "--out", tmp_path / "m", "--backbone", backbone), "never unpickles")


# --- 10. the server: bad headers, stalled clients, oversized bodies -------------------------------------


def test_the_server_survives_bad_headers_stalls_and_huge_bodies(model_dir: Path, monkeypatch) -> None:
    import socket

    import wukong
    import wukong.serve as serve

    monkeypatch.setattr(serve, "BODY_TIMEOUT", 1.0)
    monkeypatch.setattr(serve, "MAX_BODY", 1_000_000)

    def raw(port: int, request: bytes, body: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request + body)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    with serve.BackgroundServer(serve.create_app(wukong.load(model_dir))) as server:
        port = int(server.url.rsplit(":", 1)[1])
        answer = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        started = time.monotonic()  # a client that stalls mid-body is answered 408 and hung up on
        answer = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive" in answer and time.monotonic() - started < 20
        answer = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413") and b"over the 1000000-byte limit" in answer
        # a client that sends all of an oversized body gets the answer, not a connection cut mid-send
        answer = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", bytes(5_000_000))
        assert answer.startswith(b"HTTP/1.1 413") and b"body of 5000000 bytes: over the 1000000-byte limit" in answer
        body = b'["a list"]'
        answer = raw(
            port,
            f"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode(),
            body,
        )
        assert answer.startswith(b"HTTP/1.1 400")  # an image model: not an image
        health = raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b'"status":"ok"' in health
