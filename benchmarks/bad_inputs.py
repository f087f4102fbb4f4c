"""The bad-input corpus: every kind of bad input a user can hand Wukong, run for real, in one table.

Each case builds real files (images, image CSVs, text tables, model folders, output folders) or
real HTTP requests to a server on 127.0.0.1, runs the `wukong` command (a fresh process, as a user
runs it) or the server, and records what happened against what should: the exit status, the one
line that explains, the skip report, and that no file of the user's was changed or deleted.
A case passes when the outcome is the expected one, nothing printed a traceback, and every file
that must survive is byte-for-byte intact.

    .venv/bin/python benchmarks/bad_inputs.py        # writes benchmarks/results/bad_inputs.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
CAT_DOG = DATA / "cat_dog"
FAST = ["--backbone", "wukong_resnet18_s_tiny"]
PICKLE = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."


@dataclass
class Case:
    """``build(work)`` makes the input and returns the command's arguments (or, for the server, a
    request); ``expect``: ``"ok"``, ``"skipped: <reason fragment>"``, ``"note: <fragment>"``,
    ``"error: <fragment>"`` (exit 2, one line), or ``"http <status>"``."""

    group: str
    name: str
    expect: str
    build: Callable[[Path], list]
    keep: Callable[[Path], list[Path]] = field(default=lambda work: [])  # must survive unchanged


def wukong(args: list, cwd: Path, env: dict | None = None, prefix: list | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *(prefix or ["-m", "wukong.cli"]), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd, env=env)


# --- builders ---------------------------------------------------------------------------------------


def train_folder(work: Path, name: str = "train") -> Path:
    target = work / name
    if not target.exists():
        shutil.copytree(CAT_DOG / "train", target)
    return target


def with_file(relative: str, make: Callable[[Path], None], *, expect_args: list | None = None) -> Callable:
    def build(work: Path) -> list:
        train = train_folder(work)
        make(train / relative)
        return ["train", train, "--out", work / "model", "--quiet", *FAST, *(expect_args or [])]

    return build


def write(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def pil(mode: str, size=(40, 30), fmt="PNG", **save) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        color = {"L": 128, "1": 1, "I;16": 40000, "P": 3, "CMYK": (0, 128, 128, 0)}.get(
            mode, (200, 100, 50, 255)[: len(mode)]
        )
        image = Image.new(mode, size, color)
        image.save(path, fmt, **save)

    return make


def truncated(path: Path) -> None:
    path.write_bytes((CAT_DOG / "test" / "cat" / "cat.983.jpg").read_bytes()[:800])


def bomb(path: Path) -> None:
    Image.new("1", (20_000, 20_000)).save(path, "PNG")


def sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.truncate(size)

    return make


def exif_rotated(path: Path) -> None:
    image = Image.open(CAT_DOG / "test" / "cat" / "cat.983.jpg")
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())


def broken_exif(path: Path) -> None:
    data = (CAT_DOG / "test" / "cat" / "cat.983.jpg").read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\xff" + data[2:])


def fifo(path: Path) -> None:
    os.mkfifo(path)


def link(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def folder_case(change: Callable[[Path], None], *extra: str) -> Callable[[Path], list]:
    def build(work: Path) -> list:
        train = train_folder(work)
        change(train)
        return ["train", train, "--out", work / "model", "--quiet", *FAST, *extra]

    return build


def image_csv(rows: list[str], encoding: str = "utf-8", extra: bytes = b"") -> Callable[[Path], list]:
    def build(work: Path) -> list:
        table = work / "images.csv"
        table.write_bytes("\n".join(rows).encode(encoding) + extra)
        return ["train", table, "--out", work / "model", "--quiet", *FAST]

    return build


def several_sources(rows: list[str]) -> Callable[[Path], list]:
    """The training folder and a CSV of more labelled images (``rows``; ``{train}`` is the folder),
    trained on as one set."""

    def build(work: Path) -> list:
        train = train_folder(work)
        (work / "more.csv").write_text("\n".join(rows).format(train=train) + "\n")
        return ["train", train, work / "more.csv", "--out", work / "model", "--quiet", *FAST]

    return build


def test_with_a_bird(work: Path) -> Path:
    """The cat/dog test set with one more class, 'bird', that no model here knows."""
    shutil.copytree(CAT_DOG / "test", work / "test")
    (work / "test" / "bird").mkdir()
    shutil.copy(CAT_DOG / "test" / "cat" / "cat.983.jpg", work / "test" / "bird")
    return work / "test"


def cat_dog_rows(limit: int = 40) -> list[str]:
    return [f"{p},{p.parent.name}" for p in sorted((CAT_DOG / "train").rglob("*.jpg"))[:limit]]


TEXT_ROWS = [
    ("my card has not arrived yet", "card_arrival"),
    ("when will my new card come", "card_arrival"),
    ("still waiting for the card", "card_arrival"),
    ("card delivery is late", "card_arrival"),
    ("where is my card", "card_arrival"),
    ("the card never came", "card_arrival"),
    ("I want my money back", "refund"),
    ("please refund the purchase", "refund"),
    ("how do I get a refund", "refund"),
    ("refund my order", "refund"),
    ("give me back my money", "refund"),
    ("can I return this for a refund", "refund"),
]


def text_table(content: bytes | str, name: str = "t.csv", *extra: str) -> Callable[[Path], list]:
    def build(work: Path) -> list:
        table = work / name
        table.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["train", table, "--out", work / "model", "--quiet", "--strategy", "features", *extra]

    return build


def csv_text(rows=TEXT_ROWS, header: str = "text,label") -> str:
    return header + "\n" + "\n".join(f"{t},{label}" for t, label in rows) + "\n"


def output_case(prepare: Callable[[Path], Path], *extra: str) -> Callable[[Path], list]:
    def build(work: Path) -> list:
        out = prepare(work)
        return ["train", train_folder(work), "--out", out, "--quiet", *FAST, *extra]

    return build


def model_case(change: Callable[[Path], None], command: str = "predict") -> Callable[[Path], list]:
    def build(work: Path) -> list:
        folder = work / "model"
        shutil.copytree(MODELS["image"], folder)
        change(folder)
        if command == "predict":
            return ["predict", folder, CAT_DOG / "test" / "cat" / "cat.983.jpg"]
        return ["evaluate", folder, CAT_DOG / "test"]

    return build


def set_config(keys: list, value) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        (folder / "config.json").write_text(json.dumps(config))

    return change


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


MODELS: dict[str, Path] = {}


# --- the corpus ---------------------------------------------------------------------------------------


def cases() -> list[Case]:
    train_keep = lambda work: [work / "train"]  # noqa: E731 - the data must survive every run
    c: list[Case] = []
    add = c.append
    # images in a training folder
    for name, rel, make, expect in [
        ("zero-byte jpg", "cat/empty.jpg", write(b""), "skipped: empty file (0 bytes)"),
        ("truncated jpg", "cat/cut.jpg", truncated, "skipped: corrupt or truncated"),
        ("random bytes as jpg", "cat/noise.jpg", write(os.urandom(5000)), "skipped: not a readable image"),
        ("text file named png", "dog/note.png", write(b"hello world"), "skipped: not a readable image"),
        ("non-image extension", "dog/readme.txt", write(b"hello"), "skipped: not an image file"),
        ("decompression bomb", "cat/bomb.png", bomb, "skipped: possible decompression bomb"),
        ("1 GB file named jpg", "cat/huge.jpg", sparse(1024**3), "skipped: over the 537 MB limit"),
        ("broken symlink", "cat/gone.jpg", link("/no/such/file.jpg"), "skipped: broken symbolic link"),
        ("symlink loop", "cat/loop.jpg", link("loop.jpg"), "skipped: symbolic link loop"),
        ("named pipe named jpg", "cat/pipe.jpg", fifo, "skipped: not a regular file"),
        ("grayscale png", "cat/gray.png", pil("L"), "ok"),
        ("1-bit png", "cat/bits.png", pil("1"), "ok"),
        ("RGBA png", "cat/alpha.png", pil("RGBA"), "ok"),
        ("palette gif", "cat/pal.gif", pil("P", fmt="GIF"), "ok"),
        ("CMYK jpeg", "cat/cmyk.jpg", pil("CMYK", fmt="JPEG"), "ok"),
        ("16-bit png", "cat/deep.png", pil("I;16"), "ok"),
        ("EXIF-rotated jpeg", "cat/rotated.jpg", exif_rotated, "ok"),
        ("broken EXIF block", "cat/badexif.jpg", broken_exif, "ok"),
        ("1x1 pixel image", "cat/dot.png", pil("RGB", size=(1, 1)), "ok"),
        ("extreme aspect 4000x2", "cat/line.png", pil("RGB", size=(4000, 2)), "ok"),
        ("hidden AppleDouble file", "cat/._cat.jpg", write(b"\x00\x05\x16\x07junk"), "ok"),
    ]:
        add(Case("images", name, expect, with_file(rel, make), train_keep))
    for name, change, expect in [
        ("empty class folder", lambda t: (t / "bird").mkdir(), "error: class folder with no image file"),
        (
            "class folder of text files",
            lambda t: ((t / "bird").mkdir(), (t / "bird" / "a.txt").write_text("x")),
            "error: class folder with no image file",
        ),
        ("class folder linking to the root", lambda t: (t / "all").symlink_to(t), "error: a link to the data folder"),
        (
            "same image under two classes",
            lambda t: shutil.copy(next((t / "cat").glob("*.jpg")), t / "dog" / "twin.jpg"),
            "skipped: contradictory",
        ),
        (
            "a class of corrupt images only",
            lambda t: [p.write_bytes(b"bad") for p in (t / "dog").glob("*.jpg")],
            "error: have no usable example",
        ),
        ("only one class", lambda t: shutil.rmtree(t / "dog"), "error: need at least two"),
    ]:
        add(Case("images", name, expect, folder_case(change), train_keep))
    add(
        Case(
            "images",
            "no class sub-folders",
            "error: no class sub-folders",
            lambda w: ["train", train_folder(w) / "cat", "--out", w / "model", *FAST],
            train_keep,
        )
    )
    add(
        Case(
            "images",
            "missing data path",
            "error: no such file or folder",
            lambda w: ["train", w / "nope", "--out", w / "model", *FAST],
        )
    )
    add(
        Case(
            "images",
            "corrupt .tar.gz",
            "error: cannot extract",
            lambda w: (
                w.joinpath("d.tar.gz").write_bytes(b"\x1f\x8b\x08junk"),
                ["train", w / "d.tar.gz", "--out", w / "model", *FAST],
            )[1],
        )
    )
    add(
        Case(
            "images",
            "--test with an unknown class",
            "error: ['bird'] are not among the training classes",
            lambda w: ["train", train_folder(w), "--test", test_with_a_bird(w), "--out", w / "model", *FAST],
            lambda w: [w / "test"],
        )
    )
    add(
        Case(
            "images",
            "--val with an empty class folder",
            "error: class folder with no image file",
            lambda w: (
                shutil.copytree(CAT_DOG / "test", w / "val"),
                shutil.rmtree(w / "val" / "dog"),
                (w / "val" / "dog").mkdir(),
                ["train", train_folder(w), "--val", w / "val", "--out", w / "model", *FAST],
            )[-1],
        )
    )
    add(
        Case(
            "images",
            "--test all corrupt: model kept",
            "error: the model is written to",
            lambda w: (
                shutil.copytree(CAT_DOG / "test", w / "test"),
                [p.write_bytes(b"x") for p in (w / "test").rglob("*.jpg")],
                ["train", train_folder(w), "--test", w / "test", "--out", w / "model", "--quiet", *FAST],
            )[-1],
        )
    )
    # image CSVs
    add(
        Case(
            "image-csv",
            "no path/label header",
            "error: needs a header with 'path' and 'label'",
            image_csv(["file,class", *cat_dog_rows()]),
        )
    )
    add(
        Case(
            "image-csv",
            "rows naming missing files",
            "skipped: cannot read file",
            image_csv(["path,label", *cat_dog_rows(), "/no/such/image.jpg,cat"]),
        )
    )
    add(
        Case(
            "image-csv",
            "empty label cell",
            "skipped: empty path or label",
            image_csv(["path,label", *cat_dog_rows(), f"{CAT_DOG / 'test' / 'cat' / 'cat.983.jpg'},"]),
        )
    )
    add(
        Case(
            "image-csv",
            "latin-1 label",
            "ok",
            image_csv(["path,label", *[r.replace(",cat", ",chat\xe9") for r in cat_dog_rows()]], "latin-1"),
        )
    )
    add(
        Case(
            "image-csv",
            "mixed UTF-8 and cp1252 rows",
            "note: not UTF-8",
            image_csv(
                ["path,label", *[r.replace(",dog", ",chien\xe9") for r in cat_dog_rows()]],
                extra=f"\n{CAT_DOG / 'test/dog/dog.390.jpg'},chien\xe9".encode("cp1252"),
            ),
        )
    )
    add(
        Case(
            "image-csv",
            "one class only",
            "error: need at least two",
            image_csv(["path,label", *[r for r in cat_dog_rows() if r.endswith(",cat")]]),
        )
    )
    # several sources trained as one set (the labelling loop: DATA and the labelled suggestions)
    cat, dog = (sorted((CAT_DOG / "test" / c).glob("*.jpg")) for c in ("cat", "dog"))
    first_cat = f"{{train}}/cat/{sorted((CAT_DOG / 'train' / 'cat').glob('*.jpg'))[0].name}"
    for name, rows, expect in [
        (
            "labelled suggestions, one row left blank",
            [f"{cat[0]},cat", f"{dog[0]},dog", f"{cat[1]},"],
            "skipped: empty",
        ),
        ("an image of DATA listed again, same label", [f"{cat[0]},cat", f"{first_cat},cat"], "note: listed again in"),
        ("an image of DATA listed under another label", [f"{cat[0]},cat", f"{first_cat},dog"], "error: keep one label"),
        ("every row still blank", [f"{cat[0]},", f"{dog[0]},"], "error: no labelled image"),
    ]:
        add(
            Case(
                "sources", name, expect, several_sources(["path,label", *rows]), lambda w: [w / "train", w / "more.csv"]
            )
        )
    add(
        Case(
            "sources",
            "an image folder and a text table",
            "error: join sources of one kind",
            lambda w: ["train", train_folder(w), DATA / "sst2" / "dev.tsv", "--out", w / "model", *FAST],
            train_keep,
        )
    )
    add(
        Case(
            "sources",
            "two text tables, one of a single class",
            "ok",
            lambda w: (
                w.joinpath("a.csv").write_text(csv_text()),
                w.joinpath("b.csv").write_text(csv_text([("is a refund possible", "refund")])),
                ["train", w / "a.csv", w / "b.csv", "--out", w / "model", "--quiet", "--strategy", "features"],
            )[-1],
            lambda w: [w / "a.csv", w / "b.csv"],
        )
    )
    # text tables
    base = csv_text()
    for name, content, filename, expect, extra in [
        ("empty file", b"", "t.csv", "error: the file is empty", []),
        ("header only", "text,label\n", "t.csv", "error: no usable rows", []),
        ("one label", csv_text([(t, "x") for t, _ in TEXT_ROWS]), "t.csv", "error: need at least two", []),
        (
            "one bad byte run",
            base.replace("refund my order", "refund my caf\x00")
            .replace("give me", "give café")
            .encode()
            .replace(b"\x00", b"\xe9"),
            "t.csv",
            "note: not valid UTF-8",
            [],
        ),
        (
            "whole file cp1252",
            base.replace("give me", "give m\xe9").encode("cp1252"),
            "t.csv",
            "note: read as cp1252",
            [],
        ),
        (
            "quote left open",
            base.replace("refund my order", '"refund my order'),
            "t.csv",
            "skipped: read as one row",
            [],
        ),
        ("missing label", base + "a text with no label,\n", "t.csv", "skipped: missing label", []),
        ("empty text", base + ",refund\n", "t.csv", "skipped: empty text", []),
        (
            "malformed JSONL line",
            "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in TEXT_ROWS) + "\n{oops\n",
            "t.jsonl",
            "skipped: malformed JSON",
            [],
        ),
        (
            "JSONL line not an object",
            "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in TEXT_ROWS) + "\n[1,2]\n",
            "t.jsonl",
            "skipped: not a JSON object",
            [],
        ),
        ("JSON array cut short", '[{"text": "a", "label": "x"}, {"text"', "t.json", "error: not valid JSON", []),
        (
            "JSONL label is a list: several labels, a multi-label model",
            "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in TEXT_ROWS)
            + '\n{"text": "hi", "label": ["card_arrival", "refund"]}\n',
            "t.jsonl",
            "ok",
            [],
        ),
        (
            "JSONL label is an object",
            "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in TEXT_ROWS)
            + '\n{"text": "hi", "label": {"a": 1}}\n',
            "t.jsonl",
            "skipped: label is not a name or a list of names",
            [],
        ),
        (
            "three unnamed columns",
            "a,b,c\n" + "\n".join(f"{t},{lab},1" for t, lab in TEXT_ROWS),
            "t.csv",
            "error: cannot tell which column",
            [],
        ),
        ("--text-col not a column", base, "t.csv", "error: text_col='body' is not a column", ["--text-col", "body"]),
        ("binary junk named csv", os.urandom(3000).replace(b"\x00", b"\x01"), "t.csv", "error: ", []),
        ("--label-names malformed", base, "t.csv", "error: give LABEL=description pairs", ["--label-names", "refund"]),
        ("--label-names unknown label", base, "t.csv", "error: not among the classes", ["--label-names", "x=y"]),
        (
            "TSV with bare quotes",
            "sentence\tlabel\n" + "\n".join(f'{t} "quoted\t{lab}' for t, lab in TEXT_ROWS),
            "t.tsv",
            "ok",
            [],
        ),
    ]:
        add(Case("text", name, expect, text_table(content, filename, *extra)))
    add(
        Case(
            "text",
            "--test with an unknown label",
            "error: ['other'] are not among the training classes",
            lambda w: (
                w.joinpath("test.csv").write_text("text,label\nhello,other\n"),
                text_table(base)(w) + ["--test", w / "test.csv"],
            )[1],
        )
    )
    add(
        Case(
            "text",
            "--label-names on image data",
            "error: --label-names describes text labels",
            lambda w: ["train", train_folder(w), "--out", w / "model", "--label-names", "cat=a cat", *FAST],
        )
    )
    # model folders
    for name, change, expect in [
        (
            "config.json truncated",
            lambda f: (f / "config.json").write_text('{"format": "wuk'),
            "error: config.json: not valid JSON",
        ),
        ("config.json empty", lambda f: (f / "config.json").write_text(""), "error: config.json: empty file"),
        ("config.json a list", lambda f: (f / "config.json").write_text("[]"), "error: not a Wukong model config"),
        ("config.json missing", lambda f: (f / "config.json").unlink(), "error: not a Wukong model folder"),
        ("weights missing", lambda f: (f / "model.safetensors").unlink(), "error: model.safetensors: missing"),
        (
            "weights truncated",
            lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:4000]),
            "error: not a readable safetensors file",
        ),
        (
            "weights empty",
            lambda f: (f / "model.safetensors").write_bytes(b""),
            "error: not a readable safetensors file",
        ),
        (
            "a pickle in place of the weights",
            lambda f: (f / "model.safetensors").write_bytes(PICKLE),
            "error: never unpickles",
        ),
        ("metrics.json broken", lambda f: (f / "metrics.json").write_text("{"), "error: metrics.json: not valid JSON"),
        ("skipped.json broken", lambda f: (f / "skipped.json").write_text("[{"), "error: skipped.json: not valid JSON"),
        (
            "checkpoint_path in the spec",
            set_config(["backbone", "source", "spec", "kwargs", "checkpoint_path"], "/etc/passwd"),
            "error: option checkpoint_path='/etc/passwd' is not allowed",
        ),
        (
            "pretrained=True in the spec",
            set_config(["backbone", "source", "spec", "kwargs", "pretrained"], True),
            "error: is not allowed",
        ),
        (
            "unknown architecture",
            set_config(["backbone", "source", "spec", "timm_name"], "os.system"),
            "error: not a timm architecture",
        ),
        ("classes and head disagree", set_config(["classes"], ["cat", "dog", "bird"]), "error: lists 3 classes"),
        ("classes not names", set_config(["classes"], [0, 1]), "error: 'classes' must be a list"),
        ("mean not numbers", set_config(["backbone", "data_config", "mean"], "x"), "error: mean and std"),
        (
            "input size absurd",
            set_config(["backbone", "data_config", "input_size"], [3, 10**6, 10**6]),
            "error: input_size",
        ),
        ("tap not an index", set_config(["tap"], "os"), "error: tap 'os'"),
        ("unknown modality", set_config(["modality"], "audio"), "error: unknown modality"),
        ("head spec damaged", set_config(["head", "num_features"], -1), "error: head spec"),
        (
            "weights of another shape",
            lambda f: shutil.copy(MODELS["mlp"] / "model.safetensors", f / "model.safetensors"),
            "error: does not match config.json",
        ),
    ]:
        add(Case("model-folder", name, expect, model_case(change)))
    add(
        Case(
            "model-folder",
            "a killed swap left the old folder hidden",
            "ok",
            lambda w: (
                shutil.copytree(MODELS["image"], w / f".model.old{dead_pid()}"),
                ["predict", w / "model", CAT_DOG / "test" / "cat" / "cat.983.jpg"],
            )[1],
        )
    )
    add(
        Case(
            "model-folder",
            "not a folder at all",
            "error: not a Wukong model folder",
            lambda w: ["predict", w / "nothing", CAT_DOG / "test" / "cat" / "cat.983.jpg"],
        )
    )
    add(
        Case(
            "model-folder",
            "evaluate with an unknown class",
            "error: are not among the training classes",
            lambda w: ["evaluate", MODELS["image"], test_with_a_bird(w)],
        )
    )
    add(
        Case(
            "model-folder",
            "predict: every input unusable",
            "error: none of the 1 input(s) could be predicted",
            lambda w: (w.joinpath("x.jpg").write_bytes(b"no"), ["predict", MODELS["image"], w / "x.jpg"])[1],
        )
    )
    add(
        Case(
            "model-folder",
            "predict: --text on an image model",
            "error: an image model",
            lambda w: ["predict", MODELS["image"], "--text", "hello"],
        )
    )
    add(
        Case(
            "model-folder",
            "predict: a missing input",
            "error: no such file or folder",
            lambda w: ["predict", MODELS["image"], w / "nope.jpg"],
        )
    )
    # output folders and backbones
    user_files = lambda w: [w / "mine"]  # noqa: E731
    for name, prepare, extra, expect, keep in [
        ("--out is the data folder", lambda w: w / "train", [], "error: holds the data", train_keep),
        ("--out is the data's parent", lambda w: w, [], "error: holds the data", train_keep),
        ("--out inside the data", lambda w: w / "train" / "cat" / "m", [], "error: lies inside the data", train_keep),
        (
            "--out holds the user's files",
            lambda w: (
                (w / "mine" / "sub").mkdir(parents=True)
                or (w / "mine" / "thesis.txt").write_text("work")
                and w / "mine"
            ),
            ["--overwrite"],
            "error: not a Wukong model folder",
            user_files,
        ),
        (
            "--out holds a model, no --overwrite",
            lambda w: shutil.copytree(MODELS["image"], w / "m") and w / "m",
            [],
            "error: add --overwrite",
            lambda w: [w / "m"],
        ),
        (
            "--out holds a model, --overwrite",
            lambda w: shutil.copytree(MODELS["image"], w / "m") and w / "m",
            ["--overwrite"],
            "ok",
            train_keep,
        ),
        (
            "--out is a file",
            lambda w: w.joinpath("f").write_text("x") and w / "f",
            [],
            "error: is a file",
            lambda w: [w / "f"],
        ),
        (
            "--out under a file",
            lambda w: w.joinpath("f").write_text("x") and w / "f" / "m",
            [],
            "error: cannot write in",
            lambda w: [w / "f"],
        ),
        ("--out in /proc", lambda w: Path("/proc/wukong-nope/m"), [], "error: cannot write in", train_keep),
        (
            "OUT.partial is the user's",
            lambda w: ((w / "m.partial").mkdir(), (w / "m.partial" / "a.txt").write_text("x")) and w / "m",
            [],
            "error: not a Wukong work folder",
            lambda w: [w / "m.partial"],
        ),
        (
            "--backbone: a pickle named .safetensors",
            lambda w: w.joinpath("x.safetensors").write_bytes(PICKLE) and w / "m",
            ["--backbone", "x.safetensors", "--arch", "resnet18"],
            "error: never unpickles",
            train_keep,
        ),
        (
            "--backbone: no such name",
            lambda w: w / "m",
            ["--backbone", "no_such_net_xyz"],
            "error: not a timm model name",
            train_keep,
        ),
        ("--strategy bogus", lambda w: w / "m", ["--strategy", "bogus"], "error: strategy='bogus'", train_keep),
        (
            "--unfreeze not a number",
            lambda w: w / "m",
            ["--unfreeze", "some"],
            "error: give a whole number",
            train_keep,
        ),
    ]:
        add(Case("output", name, expect, output_case(prepare, *extra), keep))
    add(Case("output", "a pickle in a backbone folder", "error: never unpickles", backbone_folder_with_pickle))
    add(
        Case(
            "output",
            "full disk while saving (1 MB file-size limit)",
            "error: could not be written",
            full_disk,
            lambda w: [w / "m"],
        )
    )
    add(
        Case(
            "output",
            "pretrain --out is the data",
            "error: holds the data",
            lambda w: ["pretrain", train_folder(w), "--out", train_folder(w), "--epochs", "1"],
            train_keep,
        )
    )
    # server requests
    for name, request, expect in SERVER_CASES:
        add(Case("server", name, expect, lambda w, r=request: ["http", r]))
    return c


def backbone_folder_with_pickle(work: Path) -> list:
    from wukong.backbones.vision import embedded_folder

    shutil.copytree(embedded_folder(), work / "bb")
    (work / "bb" / "model.safetensors").write_bytes(PICKLE)
    return ["train", train_folder(work), "--out", work / "m", "--backbone", work / "bb"]


def full_disk(work: Path) -> list:
    shutil.copytree(MODELS["image"], work / "m")
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000));"
        "sys.argv = ['wukong'] + sys.argv[1:]; from wukong.cli import main; main()"
    )
    return ["prefix", ["-c", code], "train", train_folder(work), "--out", work / "m", "--overwrite", *FAST]


def http(line: str, body: bytes = b"", target: str = "image", headers: str | None = None) -> dict:
    """A raw request: ``headers=None`` sends the body's true Content-Length."""
    if headers is None:
        headers = f"Content-Length: {len(body)}" if line.startswith("POST") else ""
    head = line + " HTTP/1.1" + (f"\r\n{headers}" if headers else "")
    return {"head": head, "body": body, "target": target}


JPEG = (CAT_DOG / "test" / "cat" / "cat.983.jpg").read_bytes()
SERVER_CASES = [
    ("Content-Length not a number", http("POST /predict", headers="Content-Length: lots"), "http 400"),
    ("no Content-Length", http("POST /predict", headers=""), "http 400"),  # an empty body, to HTTP/1.1
    ("empty body", http("POST /predict"), "http 400"),
    ("body over the limit", http("POST /predict", b"x" * 40_000_000), "http 413"),
    ("stalled client", http("POST /predict", b"partial", headers="Content-Length: 100"), "http 408"),
    ("not an image", http("POST /predict", b"hello"), "http 400"),
    ("truncated jpeg", http("POST /predict", JPEG[:800]), "http 400"),
    ("top_k not a number", http("POST /predict?top_k=zero", JPEG), "http 422"),
    ("unknown path", http("GET /admin"), "http 404"),
    ("HEAD /health", http("HEAD /health"), "http 200"),
    ("no token", http("POST /predict", JPEG, "token"), "http 401"),
    (
        "wrong token",
        http("POST /predict", JPEG, "token", f"Authorization: Bearer no\r\nContent-Length: {len(JPEG)}"),
        "http 401",
    ),
    ("a good image", http("POST /predict", JPEG), "http 200"),
    ("text: a JSON array", http("POST /predict", b'["hello"]', "text"), "http 400"),
    ("text: broken JSON", http("POST /predict", b'{"text": ', "text"), "http 400"),
    ("text: texts is a string", http("POST /predict", b'{"texts": "hello"}', "text"), "http 400"),
    ("text: not UTF-8", http("POST /predict", b'{"text": "caf\xe9"}', "text"), "http 400"),
    ("text: a good request", http("POST /predict", b'{"text": "refund please"}', "text"), "http 200"),
]


# --- running -------------------------------------------------------------------------------------------


def snapshot(paths: list[Path]) -> dict[str, bytes]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        for path in files:
            try:
                out[str(path)] = path.read_bytes() if path.stat().st_size < 50_000_000 else b"<large>"
            except OSError:
                out[str(path)] = b"<unreadable>"
    return out


def run_case(case: Case, work: Path, servers: dict) -> dict:
    args = case.build(work)
    keep = case.keep(work)
    before = snapshot(keep)
    started = time.perf_counter()
    if args[0] == "http":
        observed, text, ok_outcome, traceback = run_http(args[1], servers, case.expect)
    else:
        prefix = args[1] if args[0] == "prefix" else None
        result = wukong(args[2:] if prefix else args, cwd=work, prefix=prefix)
        observed, text, ok_outcome = judge_cli(result, case.expect, work)
        traceback = "Traceback" in result.stderr
    intact = snapshot(keep) == before
    return {
        "group": case.group,
        "case": case.name,
        "expected": case.expect,
        "observed": observed,
        "message": text,
        "no_traceback": not traceback,
        "user_files_intact": intact,
        "pass": ok_outcome and not traceback and intact,
        "seconds": round(time.perf_counter() - started, 1),
    }


def judge_cli(result: subprocess.CompletedProcess, expect: str, work: Path) -> tuple[str, str, bool]:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if result.returncode != 0:
        line = errors[0] if errors else result.stderr.strip().splitlines()[-1:] or [""]
        text = line if isinstance(line, str) else line[0]
        observed = f"exit {result.returncode}"
        kind, _, fragment = expect.partition(": ")
        ok = kind == "error" and result.returncode == 2 and len(errors) == 1 and fragment in text
        return observed, text, ok
    report = skipped_report(result, work)
    observed = "exit 0"
    if expect == "ok":
        return observed, "; ".join(report)[:300], not any(r.startswith("skipped") for r in report)
    kind, _, fragment = expect.partition(": ")
    hits = [r for r in report if r.startswith(kind) and fragment in r]
    return observed, (hits[0] if hits else "; ".join(report))[:300], bool(hits)


def skipped_report(result: subprocess.CompletedProcess, work: Path) -> list[str]:
    lines = [line for line in result.stdout.splitlines() if line.startswith(("skipped ", "note "))]
    return [line.replace(" ", ": ", 1) if line.startswith("note") else line for line in lines] + [
        f"skipped: {line}" for line in result.stdout.splitlines() if "\tskipped: " in line
    ]


def start_servers(work: Path) -> dict:
    import wukong
    import wukong.serve as serve

    serve.BODY_TIMEOUT = 2.0
    servers = {}
    for key, folder, token in (
        ("image", MODELS["image"], None),
        ("token", MODELS["image"], "s3cret"),
        ("text", MODELS["text"], None),
    ):
        servers[key] = serve.BackgroundServer(serve.create_app(wukong.load(folder), token=token)).__enter__()
    return servers


def run_http(request: dict, servers: dict, expect: str) -> tuple[str, str, bool, bool]:
    port = int(servers[request["target"]].url.rsplit(":", 1)[1])
    data = (request["head"] + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").encode() + request["body"]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    answer = b"".join(chunks).decode("latin-1")
    status = answer.split(" ", 2)[1] if answer.startswith("HTTP/") else None
    observed = f"http {status}" if status else "closed"
    body = answer.partition("\r\n\r\n")[2][:200]
    return observed, body, observed == expect, "Traceback" in answer


def train_models(work: Path) -> None:
    def train(args: list) -> None:
        result = wukong(args, cwd=work)
        if result.returncode != 0:
            raise SystemExit(f"could not train the reference model: {result.stderr[-2000:]}")

    train(["train", CAT_DOG / "train", "--out", work / "image", "--quiet", *FAST])
    train(
        [
            "train",
            CAT_DOG / "train",
            "--out",
            work / "mlp",
            "--quiet",
            "--head",
            "mlp",
            "--strategy",
            "head",
            "--epochs",
            "1",
            *FAST,
        ]
    )
    (work / "t.csv").write_text(csv_text())
    train(["train", work / "t.csv", "--out", work / "text", "--quiet", "--strategy", "features"])
    MODELS.update(image=work / "image", mlp=work / "mlp", text=work / "text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bad_inputs.json")
    parser.add_argument(
        "--only", help="run only the cases whose name contains this, merged into OUT (the others keep theirs)"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wukong-bad-"))
    os.environ.setdefault("WUKONG_CACHE", str(root / "cache"))
    started = time.time()
    (root / "models").mkdir()
    train_models(root / "models")
    servers = start_servers(root)
    rows = []
    try:
        for i, case in enumerate(cases()):
            if args.only and args.only not in case.name:
                continue
            work = root / f"case{i:03d}"
            work.mkdir()
            row = run_case(case, work, servers)
            rows.append(row)
            mark = "ok  " if row["pass"] else "FAIL"
            print(f"{mark} [{row['group']}] {row['case']}: {row['observed']} {row['message'][:110]}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        for server in servers.values():
            server.__exit__()
        shutil.rmtree(root, ignore_errors=True)
    summary = {**_summary(rows), "seconds": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"summary": summary, "cases": rows}
    if args.only and args.out.exists():  # the cases run again replace theirs; the others keep theirs
        earlier = json.loads(args.out.read_text())
        again = {(r["group"], r["case"]) for r in rows}
        current = {(c.group, c.name) for c in cases()}  # a case renamed or removed since is dropped
        kept = [r for r in earlier["cases"] if (r["group"], r["case"]) in current - again]
        order = {key: i for i, key in enumerate((c.group, c.name) for c in cases())}
        merged = sorted(kept + rows, key=lambda r: order[(r["group"], r["case"])])
        result = {
            "summary": {**_summary(merged), "seconds": earlier["summary"]["seconds"]},
            "cases": merged,
            "reruns": [*earlier.get("reruns", []), {"only": args.only, **summary}],
        }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))
    if summary["passed"] != summary["cases"]:
        sys.exit(1)


def _summary(rows: list[dict]) -> dict:
    return {
        "cases": len(rows),
        "passed": sum(r["pass"] for r in rows),
        "tracebacks": sum(not r["no_traceback"] for r in rows),
        "user_files_lost": sum(not r["user_files_intact"] for r in rows),
        "by_group": {g: sum(1 for r in rows if r["group"] == g) for g in dict.fromkeys(r["group"] for r in rows)},
    }


if __name__ == "__main__":
    main()
