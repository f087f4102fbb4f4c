"""The `wukong` command, as users and scripts call it: contracts, bad input, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import CAT_DOG, DATA, FAST_BACKBONE

CMD = [sys.executable, "-m", "wukong.cli"]


def wukong(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"wukong {args} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """cat/dog with one corrupt and one non-image file in the training folder."""
    import shutil

    root = tmp_path_factory.mktemp("cli")
    train = root / "train"
    shutil.copytree(CAT_DOG / "train", train)
    (train / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (train / "dog" / "readme.txt").write_text("hello")
    out = root / "model"
    tests = []  # the test photos as two sources, one set (as 'wukong evaluate MODEL test' reads them whole)
    for name in ("cat", "dog"):
        listed = root / f"test_{name}.csv"
        photos = sorted((CAT_DOG / "test" / name).glob("*.jpg"))
        listed.write_text("path,label\n" + "".join(f"{p},{name}\n" for p in photos))
        tests += ["--test", listed]
    result = wukong("train", train, *tests, "--out", out, "--json", "--backbone", FAST_BACKBONE)
    return out, json.loads(result.stdout), train


def test_train_writes_the_model_folder_contract(trained) -> None:
    out, printed, _ = trained
    assert {"config.json", "model.safetensors", "metrics.json", "skipped.json", "report.html"} <= {
        p.name for p in out.iterdir()
    }
    assert "broken.jpg" in (out / "report.html").read_text()  # the skipped files are listed there too
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 2 * (out / "model.safetensors").stat().st_size + 1_000_000  # nothing copied in by mistake
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_data"] == [str((out.parent / f"test_{name}.csv").resolve()) for name in ("cat", "dog")]
    for key, kind in [
        ("val_accuracy", float),
        ("test_accuracy", float),
        ("strategy", str),
        ("backbone", str),
        ("classes", list),
        ("train_seconds", float),
    ]:
        assert isinstance(metrics[key], kind), key
    assert metrics["classes"] == ["cat", "dog"]
    assert printed["test_accuracy"] == metrics["test_accuracy"]
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_reason"] == printed["strategy_reason"]
    for name, info in metrics["taps_tried"].items():  # every candidate and its score, printed and saved
        assert f"{name}: {info['cv_loss']}" in printed["strategy_reason"]
    assert "pixels16@64px" in metrics["taps_tried"]  # raw pixels: whether transfer helps at all
    side = metrics["input_size"]  # measured: the embedded backbone's 64px, or 1.25x that
    assert side in (64, 80) and config["backbone"]["data_config"]["input_size"] == [3, side, side]
    assert not (out.parent / "model.partial").exists()  # work folder cleaned up


def test_bad_training_files_are_skipped_and_reported(trained) -> None:
    out, printed, _ = trained
    skipped = {Path(item["path"]).name: item["reason"] for item in json.loads((out / "skipped.json").read_text())}
    assert set(skipped) == {"broken.jpg", "readme.txt"}
    assert printed["skipped"] == 2


def test_predict_json_lines_with_top_k(trained, tmp_path: Path) -> None:
    out, _, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    cat = CAT_DOG / "test" / "cat" / "cat.983.jpg"
    result = wukong("predict", out, cat, CAT_DOG / "test" / "dog", bad, "--top-k", "2", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 + len(list((CAT_DOG / "test" / "dog").glob("*.jpg"))) + 1
    by_input = {Path(r["input"]).name: r for r in rows}
    assert "not a readable image" in by_input["bad.png"]["error"]
    row = by_input["cat.983.jpg"]
    assert row["label"] in ("cat", "dog") and len(row["top_k"]) == 2
    assert row["top_k"][0][0] == row["label"] and row["score"] == row["top_k"][0][1]
    assert abs(sum(score for _, score in row["top_k"]) - 1.0) < 1e-4


def test_evaluate_json(trained) -> None:
    out, printed, _ = trained
    metrics = json.loads(wukong("evaluate", out, CAT_DOG / "test", "--json").stdout)
    assert metrics["accuracy"] == printed["test_accuracy"]
    assert set(metrics["per_class"]) == {"cat", "dog"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 22
    more = out.parent / "more.csv"  # two more photos, and one of the test folder's again (used once)
    cats = sorted((CAT_DOG / "train" / "cat").glob("*.jpg"))[:2] + sorted((CAT_DOG / "test" / "cat").glob("*.jpg"))[:1]
    more.write_text("path,label\n" + "".join(f"{p},cat\n" for p in cats))
    joined = json.loads(wukong("evaluate", out, CAT_DOG / "test", more, "--json").stdout)
    assert sum(map(sum, joined["confusion_matrix"])) == 24
    assert sum(joined["confusion_matrix"][0]) == sum(metrics["confusion_matrix"][0]) + 2  # cats
    assert any("listed again" in s["reason"] for s in joined["skipped"])


def test_new_process_predictions_match(trained) -> None:
    import wukong as wk

    out, _, _ = trained
    here = wk.load(out).predict_proba(CAT_DOG / "test")
    test_dir = str(CAT_DOG / "test")
    code = f"import wukong, json; print(json.dumps(wukong.load({str(out)!r}).predict_proba({test_dir!r}).tolist()))"
    there = np.asarray(
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    )
    # Each process picks its engine by timing it (onnxruntime fp32 or PyTorch bf16, wukong.engine): on a
    # loaded machine two processes may pick differently, and the engines agree to a cosine of 0.999, so
    # probabilities to a few thousandths (measured: 2.3e-3 at most on these photos), not to float precision.
    np.testing.assert_allclose(here, there, atol=1e-2)


def test_like_trains_again_with_the_models_choices_without_searching(trained, tmp_path: Path) -> None:
    import wukong as wk

    out, _, train = trained
    again = tmp_path / "again"
    wukong("train", train, "--like", out, "--out", again, "--quiet")
    first, second = (json.loads((folder / "metrics.json").read_text()) for folder in (out, again))
    assert first["strategy"] == second["strategy"] == "features" and len(first["taps_tried"]) > 1
    # the features read, their size and C are the first model's, and nothing else was tried
    assert list(second["taps_tried"]) == [f"{first['tap']}@{first['input_size']}px"]
    assert second["classifier"]["C"] == first["classifier"]["C"]
    assert second["strategy_reason"].startswith(f"the choices of {out} (--like)")
    # the same data and the same choices: the same model (engines may differ between processes: see above)
    np.testing.assert_allclose(
        wk.load(again).predict_proba(CAT_DOG / "test"), wk.load(out).predict_proba(CAT_DOG / "test"), atol=1e-2
    )
    for extra, message in ((["--strategy", "head"], "leave out --strategy"), ([], "a model of images")):
        data = train if extra else DATA / "sst2" / "dev.tsv"
        bad = wukong("train", data, "--like", out, "--out", tmp_path / "x", *extra, check=False)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no/such/folder", "--out", "x"], "no/such/folder: no such file or folder"),
        (["predict", "no/such/model", "a.jpg"], "not a Wukong model folder"),
        (["train", CAT_DOG / "train" / "cat", "--out", "x"], "no class sub-folders"),
        (["train", CAT_DOG / "train", "--test", "no/test", "--out", "x"], "--test no/test: no such file or folder"),
        (["train", CAT_DOG / "train", DATA / "sst2" / "dev.tsv", "--out", "x"], "holds image data; join sources of"),
        (["train", CAT_DOG / "train", "--strategy", "bogus", "--out", "x"], "strategy='bogus': choose one of"),
        (["train", CAT_DOG / "train", "--linear-model", "tree", "--out", "x"], "linear_model='tree': choose one of"),
    ],
)
def test_bad_input_gives_one_line_without_traceback(args, message, tmp_path: Path) -> None:
    result = subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_command_has_help() -> None:
    commands = ["train", "predict", "evaluate", "export", "pretrain", "serve", "ui", "audit", "suggest", "models"]
    for command in [*commands, "cache info", "cache clear"]:
        assert "Usage" in wukong(*command.split(), "--help").stdout


def test_killed_training_resumes_from_its_last_checkpoint(cifar_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = [
        *CMD,
        "train",
        str(cifar_small / "train"),
        "--out",
        str(out),
        "--strategy",
        "finetune",
        "--epochs",
        "8",
        "--seed",
        "1",
        "--backbone",
        FAST_BACKBONE,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = tmp_path / "model.partial" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the first checkpoint finish writing
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written that would load
    result = wukong(*args[3:], "--resume", "--json")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["resumed_from_epoch"] >= 1
    assert json.loads(result.stdout)["val_accuracy"] is not None


def test_server_predicts_posted_images(trained) -> None:
    import urllib.error
    import urllib.request

    import wukong as wk
    from wukong.serve import BackgroundServer, create_app

    out, _, _ = trained
    model = wk.load(out)
    with BackgroundServer(create_app(model)) as server:
        base = server.url
        health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=30).read())
        assert health == {"status": "ok", "modality": "image", "classes": ["cat", "dog"]}
        image = CAT_DOG / "test" / "cat" / "cat.983.jpg"
        request = urllib.request.Request(f"{base}/predict?top_k=2", data=image.read_bytes(), method="POST")
        row = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert row["label"] == model.predict([image])[0] and len(row["top_k"]) == 2
        bad = urllib.request.Request(f"{base}/predict", data=b"not an image", method="POST")
        try:
            urllib.request.urlopen(bad, timeout=60)
            raise AssertionError("a bad upload must be refused")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "not a readable image" in json.loads(exc.read())["error"]


def test_server_with_a_token_refuses_requests_without_it(trained) -> None:
    import urllib.error
    import urllib.request

    import wukong as wk
    from wukong.serve import BackgroundServer, create_app

    out, _, _ = trained
    image = next((CAT_DOG / "test" / "dog").glob("*.jpg")).read_bytes()
    with BackgroundServer(create_app(wk.load(out), token="s3cret")) as server:

        def post(headers: dict[str, str], query: str = "") -> tuple[int, dict]:
            request = urllib.request.Request(f"{server.url}/predict{query}", data=image, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert json.loads(urllib.request.urlopen(f"{server.url}/health", timeout=30).read())["status"] == "ok"
        assert post({})[0] == 401
        status, body = post({"Authorization": "Bearer wrong"})
        assert status == 401 and "token" in body["error"]
        status, body = post({"Authorization": "Bearer s3cret"})
        assert status == 200 and body["label"] in ("cat", "dog")
        status, body = post({"Authorization": "Bearer s3cret"}, "?top_k=zero")
        assert status == 422 and "top_k='zero'" in body["error"]
