"""TextClassifier on the real BANKING77 and SST-2 files: every strategy learns, auto explains itself,
bad rows are reported, models survive a new process, and the CLI trains and predicts text."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from wukong import ImageClassifier, TextClassifier, load
from wukong.backbones.sentence import load_sentence_transformer
from wukong.cli.train import _label_descriptions
from wukong.data.text import read_text_table
from wukong.errors import DataError, ParameterError
from wukong.export import export
from wukong.heads import final_linear
from wukong.serve import BackgroundServer, create_app
from wukong.strategies.auto import FEWSHOT_BELOW, choose_text_strategy
from wukong.text_network import TokenBatches

from .conftest import DATA

BANKING = DATA / "banking77"
SST2 = DATA / "sst2"
CMD = [sys.executable, "-m", "wukong.cli"]
# Ten intents (chance 0.1) and two sentiments (chance 0.5): the bars need real transfer, not luck.
BANKING_BAR = 0.6
SST2_BAR = 0.62  # 3.4 standard deviations above chance on 200 test sentences
FAST = {"progress": False, "seed": 0}


def _per_class(path: Path, classes: list[str] | None, per_class: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded sample of ``per_class`` texts of each class (of ``classes``, default all) of a file."""
    source = read_text_table(path)
    rng = np.random.default_rng(seed)
    labels = np.asarray(source.labels)
    texts, names = [], []
    for name in classes or source.classes:
        for i in rng.choice(np.flatnonzero(labels == name), per_class, replace=False):
            texts.append(source.texts[i])
            names.append(name)
    return texts, names


@pytest.fixture(scope="module")
def banking() -> dict[str, tuple[list[str], list[str]]]:
    """Ten BANKING77 intents: 8 training texts each (from train.csv), 10 test texts each (test.csv)."""
    classes = read_text_table(BANKING / "test.csv").classes[::7][:10]
    return {
        "train": _per_class(BANKING / "train.csv", classes, 8, seed=0),
        "test": _per_class(BANKING / "test.csv", classes, 10, seed=1),
    }


@pytest.fixture(scope="module")
def sst2() -> dict[str, tuple[list[str], list[str]]]:
    """SST-2: 32 training sentences per class (dev.tsv holds full sentences), 100 test sentences per class."""
    return {
        "train": _per_class(SST2 / "dev.tsv", None, 32, seed=0),
        "test": _per_class(SST2 / "test.tsv", None, 100, seed=1),
    }


@pytest.fixture(scope="module")
def fewshot_model(banking) -> TextClassifier:
    """``auto`` on 8 examples per intent: the few-shot strategy, briefly tuned (reused by several tests)."""
    return TextClassifier(pair_steps=12, **FAST).fit(*banking["train"])


# --- each strategy learns ------------------------------------------------------------------------


def test_auto_on_few_examples_picks_fewshot_and_says_why(fewshot_model: TextClassifier, banking) -> None:
    assert fewshot_model.strategy_ == "fewshot"
    assert "few examples" in fewshot_model.strategy_reason_ and "pairs" in fewshot_model.strategy_reason_
    info = fewshot_model.metrics_["contrastive"]
    assert info["steps"] == 12 and info["pairs_seen"] > 12 * 32
    assert info["loss_last"] < info["loss_first"], "contrastive tuning must lower its loss"
    assert fewshot_model.evaluate(*banking["test"])["accuracy"] >= BANKING_BAR
    # the default encoder is kept (same command, same model everywhere); where mpnet is installed, it says so
    from wukong.backbones.catalog import entry

    assert fewshot_model.backbone_name_ == "all-MiniLM-L6-v2"
    mpnet_here = entry("all-mpnet-base-v2").installed()
    assert ("--preset best" in fewshot_model.strategy_reason_) == mpnet_here
    # before tuning, auto measured that transfer helps: the embedding against TF-IDF n-grams
    tried = fewshot_model.metrics_["candidates_tried"]
    assert set(tried) == {"sentence embedding", "tfidf-ngrams"}
    assert tried["sentence embedding"]["cv_loss"] < tried["tfidf-ngrams"]["cv_loss"]
    assert fewshot_model.metrics_["candidate_kept"] == "sentence embedding"
    assert "the pretrained encoder helps" in fewshot_model.strategy_reason_


def _ciphered(texts: list[str], seed: int = 0) -> list[str]:
    """The texts in a seeded letter-substitution cipher: the same words and n-grams, in a 'language' the
    encoder never read."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(letters, "".join(np.random.default_rng(seed).permutation(list(letters))))
    return [t.lower().translate(table) for t in texts]


def test_auto_says_when_transfer_does_not_help_and_keeps_tfidf(banking, tmp_path: Path) -> None:
    train, test = (_ciphered(banking[k][0]) for k in ("train", "test"))
    model = TextClassifier(**FAST).fit(train, banking["train"][1])
    assert model.strategy_ == "features" and model.backbone_name_ == "tfidf-ngrams"
    assert model.strategy_reason_.startswith("transfer does not help on this data")
    ngrams, embedding = (model.metrics_["candidates_tried"][k] for k in ("tfidf-ngrams", "sentence embedding"))
    assert ngrams["cv_loss"] + ngrams["cv_loss_se"] < embedding["cv_loss"]
    accuracy = model.score(test, banking["test"][1])
    assert accuracy >= BANKING_BAR
    # the embedding would have done worse on these texts (measured, not assumed)
    encoder = TextClassifier(strategy="features", **FAST).fit(train, banking["train"][1])
    assert accuracy > encoder.score(test, banking["test"][1])
    # trained again with a model's choices (wukong train --like): the encoder's C is kept and nothing is
    # compared; the n-gram model's choice has no parameter, so its comparison runs again
    chosen = encoder.chosen_params()
    assert chosen["strategy"] == "features" and chosen["tuning"] == {"c_grid": [encoder.metrics_["classifier"]["C"]]}
    again = TextClassifier(**chosen).fit(train, banking["train"][1])
    # (the same fit but for where L-BFGS starts: the search warm-starts it along the path of C values)
    np.testing.assert_allclose(again.predict_proba(test), encoder.predict_proba(test), atol=2e-3)
    assert model.chosen_params()["strategy"] == "auto" and model.chosen_params()["tuning"] is None
    # saved as every model is: JSON and safetensors, the vocabularies in config.json, the weighting with the head
    folder = model.save(tmp_path / "tfidf")
    config = json.loads((folder / "config.json").read_text())
    assert config["backbone"]["name"] == "tfidf-ngrams" and len(config["ngrams"]["chars"]) > 100
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pt"))
    assert "Features compared" in (folder / "report.html").read_text()  # the two scores, drawn
    again = load(folder)
    np.testing.assert_allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)
    # the unknown score's bank of training n-grams is saved sparse: a small folder, the same scores
    assert "open_set.bank.data" in safe_open(folder / "model.safetensors", "np").keys()
    assert (folder / "model.safetensors").stat().st_size < 4e6
    np.testing.assert_allclose(again.unknown_score(test), model.unknown_score(test), atol=1e-6)
    # served as every model is: the loaded folder, over HTTP on 127.0.0.1
    with BackgroundServer(create_app(again)) as server:
        body = json.dumps({"texts": test[:5]}).encode()
        request = urllib.request.Request(
            f"{server.url}/predict", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert [r["label"] for r in json.loads(response.read())] == model.predict(test[:5])
    # there is no network to export: said plainly
    with pytest.raises(ParameterError, match="tfidf-ngrams"):
        export(again, tmp_path / "export.onnx")


@pytest.mark.parametrize("strategy", ["features", "head", "finetune"])
def test_strategy_learns_banking77_subset(strategy: str, banking, tmp_path: Path) -> None:
    short = {"epochs": 2, "head_epochs": 10} if strategy == "finetune" else {}
    clf = TextClassifier(strategy=strategy, **short, **FAST)
    clf.fit(*banking["train"], work_dir=tmp_path)
    assert clf.strategy_ == strategy
    # the pretrained encoder's engine is chosen (``TextEncoder``); a fine-tuned one runs in PyTorch
    assert (clf.metrics_["engine"] == "torch (weights changed)") == (strategy == "finetune")
    metrics = clf.evaluate(*banking["test"])
    assert metrics["accuracy"] >= BANKING_BAR, (strategy, metrics["accuracy"], clf.metrics_.get("history"))
    assert set(metrics) >= {"accuracy", "confusion_matrix", "skipped"}


@pytest.mark.parametrize("strategy", ["features", "fewshot"])
def test_strategy_learns_sst2_subset(strategy: str, sst2) -> None:
    clf = TextClassifier(strategy=strategy, pair_steps=8, **FAST).fit(*sst2["train"])
    accuracy = clf.evaluate(*sst2["test"])["accuracy"]
    assert accuracy >= SST2_BAR, (strategy, accuracy)


def test_finetune_changes_only_the_layers_it_unfreezes(banking, tmp_path: Path) -> None:
    clf = TextClassifier(strategy="finetune", unfreeze=1, epochs=2, head_epochs=3, **FAST)
    tuned = clf.fit(*banking["train"], work_dir=tmp_path).net_.features.state_dict()
    pretrained = load_sentence_transformer().state_dict()
    changed = {k for k, v in tuned.items() if not torch.equal(v, pretrained[k])}
    assert changed and all(".layer.5." in k for k in changed), sorted(changed)[:5]
    assert clf.metrics_["unfreeze"] == 1


# --- the auto rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smallest", "median", "expected"),
    [
        (1, 10, "features"),
        (2, 2, "fewshot"),
        (5, FEWSHOT_BELOW - 1, "fewshot"),
        (FEWSHOT_BELOW, FEWSHOT_BELOW, "finetune"),
        (31, 117, "finetune"),  # BANKING77: a few small intents, most with over a hundred examples
    ],
)
def test_auto_rule_by_examples_per_class(smallest: int, median: int, expected: str) -> None:
    choice = choose_text_strategy(smallest, median)
    assert choice.strategy == expected
    assert str(smallest) in choice.reason


# --- data problems -------------------------------------------------------------------------------


def test_bad_rows_are_skipped_and_reported(banking, tmp_path: Path) -> None:
    texts, labels = banking["train"]
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(zip(texts[:40], labels[:40], strict=True))
        writer.writerow(["   ", labels[0]])  # line 42: empty text
        writer.writerow(["a text without its label", ""])  # line 43: missing label
        writer.writerows(zip(texts[40:], labels[40:], strict=True))
    clf = TextClassifier(strategy="features", **FAST).fit(path)
    reasons = {item["path"]: item["reason"] for item in clf.skipped_}
    assert reasons == {f"{path}:42": "empty text", f"{path}:43": "missing label"}
    assert clf.metrics_["skipped"] == 2
    assert sum(clf.metrics_["train_examples"].values()) + clf.metrics_["val_examples"] == len(texts)


def test_bad_items_in_lists_are_skipped_with_their_index(banking) -> None:
    texts, labels = list(banking["train"][0]), list(banking["train"][1])
    texts[3], labels[5] = "", None
    clf = TextClassifier(strategy="features", **FAST).fit(texts, labels)
    assert {(s["path"], s["reason"]) for s in clf.skipped_} == {
        ("texts[3]", "empty text"),
        ("texts[5]", "missing label"),
    }


def test_unknown_strategy_and_unfitted_use_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="fewshot"):
        TextClassifier(strategy="magic").fit(["a", "b"], ["x", "y"])
    with pytest.raises(AttributeError, match="fit"):
        TextClassifier().predict(["hello"])


def test_length_buckets_pad_little_and_keep_every_text() -> None:
    rng = np.random.default_rng(0)
    tokens = [[7] * int(n) for n in rng.integers(3, 60, size=500)]
    tokenizer = load_sentence_transformer().tokenizer
    batches = TokenBatches(tokens, np.zeros(500, dtype=np.int64), tokenizer=tokenizer, batch_size=32, seed=0)
    seen = np.concatenate(batches.batches)
    assert sorted(seen.tolist()) == list(range(500))
    padded = sum(len(b) * max(len(tokens[i]) for i in b) for b in batches.batches)
    assert padded < 1.2 * sum(len(t) for t in tokens)  # random batches pad ~1.8x here
    rows = batches.__getitems__([0])
    assert rows[0][0].shape[0] == 2 and all(r[0].shape == rows[0][0].shape for r in rows)
    shortest = min(range(len(rows)), key=lambda j: int(rows[j][0][1].sum()))  # padded by the tokenizer
    ids, mask = rows[shortest][0]
    assert int(mask.sum()) < len(mask) and set(ids[mask == 0].tolist()) == {tokenizer.pad_token_id}


# --- persistence and the command line -----------------------------------------------------------


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_tuned_model_loads_in_a_new_process_with_the_same_probabilities(
    fewshot_model: TextClassifier, banking, tmp_path: Path
) -> None:
    folder = fewshot_model.save(tmp_path / "model")
    texts = banking["test"][0][:20]
    here = fewshot_model.predict_proba(texts)
    code = (
        "import json, sys, wukong; m = wukong.load(sys.argv[1]); "
        "print(json.dumps(m.predict_proba(json.loads(sys.argv[2])).tolist()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(folder), json.dumps(texts)], capture_output=True, text=True, check=True
    )
    there = np.asarray(json.loads(result.stdout))
    np.testing.assert_allclose(there, here, atol=1e-4)
    assert load(folder).metrics_["strategy"] == "fewshot"


def test_head_only_model_folder_leaves_the_pretrained_encoder_out(banking, tmp_path: Path) -> None:
    clf = TextClassifier(strategy="features", **FAST).fit(*banking["train"])
    folder = clf.save(tmp_path / "model")
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "np") as saved:  # the head and the open-set score; MiniLM is 90 MB
        assert {key.split(".")[0] for key in saved.keys()} == {"head", "open_set"}
    assert (folder / "model.safetensors").stat().st_size < 200_000
    assert sum(f.stat().st_size for f in folder.rglob("*")) < 1_000_000, sorted(folder.iterdir())
    np.testing.assert_allclose(load(folder).predict_proba(banking["test"][0]), clf.predict_proba(banking["test"][0]))
    with pytest.raises(ParameterError, match="takes head= when loaded, not backbone="):
        load(folder, backbone=torch.nn.Linear(2, 2))  # the encoder is named in the folder
    with pytest.raises(DataError, match="holds a TextClassifier; load it with TextClassifier.load"):
        ImageClassifier.load(folder)


def test_cli_trains_on_a_csv_and_predicts_text(banking, tmp_path: Path) -> None:
    texts, labels = banking["train"]
    data = tmp_path / "intents.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "category"), *zip(texts, labels, strict=True)])
    test = tmp_path / "test.csv"
    with open(test, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "category"), *zip(*banking["test"], strict=True)])
    out = tmp_path / "model"
    run = subprocess.run(
        [*CMD, "train", data, "--test", test, "--strategy", "features", "--out", out, "--json"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["strategy"] == "features" and summary["test_accuracy"] >= BANKING_BAR
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"val_accuracy", "test_accuracy", "strategy", "backbone", "classes", "train_seconds"}

    queries = ["my card still hasn't arrived", banking["test"][0][0]]
    args = [*CMD, "predict", out, "--text", queries[0], "--text", queries[1], "--top-k", "3", "--json"]
    run = subprocess.run(args, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["input"] for r in rows] == queries
    expected = load(out).predict_top_k(queries, 3)
    for row, top in zip(rows, expected, strict=True):
        assert len(row["top_k"]) == 3 and row["label"] == row["top_k"][0][0] == top[0][0]
        assert row["top_k"][0][1] >= row["top_k"][1][1] >= row["top_k"][2][1]
        np.testing.assert_allclose([s for _, s in row["top_k"]], [s for _, s in top], atol=1e-5)


def test_label_names_become_examples_only_when_they_are_words(banking, sst2) -> None:
    with_names = TextClassifier(strategy="features", **FAST).fit(*banking["train"])
    without = TextClassifier(strategy="features", label_names=False, **FAST).fit(*banking["train"])
    assert with_names.metrics_["label_name_examples"] == 10 and without.metrics_["label_name_examples"] == 0
    # the training counts stay the user's own examples
    assert with_names.metrics_["train_examples"] == without.metrics_["train_examples"]
    assert not torch.equal(final_linear(with_names.net_.head).weight, final_linear(without.net_.head).weight)
    assert TextClassifier(strategy="features", **FAST).fit(*sst2["train"]).metrics_["label_name_examples"] == 0
    with pytest.raises(Exception, match="not words"):
        TextClassifier(strategy="features", label_names=True, **FAST).fit(*sst2["train"])


@pytest.mark.slow
def test_label_descriptions_lift_few_shot_sentiment(sst2) -> None:
    # SST-2's labels are 0/1: nothing to learn from their names, but a user knows what they mean.
    # 8 examples per class from train.tsv (short phrases among them): the hard few-shot setting,
    # where auto tunes the encoder on pairs (fewshot) and the two descriptions join the pairs.
    train = _per_class(SST2 / "train.tsv", None, 8, seed=0)
    plain = TextClassifier(**FAST).fit(*train)
    described = TextClassifier(label_names={0: "negative", 1: "positive"}, **FAST).fit(*train)
    assert plain.strategy_ == described.strategy_ == "fewshot"
    assert "label_texts" not in plain.metrics_
    gain = described.evaluate(*sst2["test"])["accuracy"] - plain.evaluate(*sst2["test"])["accuracy"]
    assert gain >= 0.02, gain  # measured on 4 samples: +3 to +7 points


def test_label_descriptions_join_the_examples_and_survive_saving(sst2, tmp_path: Path) -> None:
    described = TextClassifier(strategy="features", label_names={0: "negative", 1: "positive"}, **FAST)
    described.fit(*sst2["train"])
    assert described.metrics_["label_texts"] == {"0": "negative", "1": "positive"}
    described.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.label_names == {"0": "negative", "1": "positive"}  # JSON keys are strings
    assert again.predict(sst2["test"][0][:20]) == described.predict(sst2["test"][0][:20])


def test_label_descriptions_are_checked_against_the_classes(sst2) -> None:
    with pytest.raises(ParameterError, match=r"labels \['neutral'\] that are not among the classes"):
        TextClassifier(strategy="features", label_names={"neutral": "so-so"}, **FAST).fit(*sst2["train"])
    with pytest.raises(ParameterError, match="empty description"):
        TextClassifier(strategy="features", label_names={"0": " ", "1": "good"}, **FAST).fit(*sst2["train"])
    # one class described: the other's name "1" says nothing, so the user is asked to describe it
    with pytest.raises(DataError, match="not words; describe each"):
        TextClassifier(strategy="features", label_names={"0": "negative"}, **FAST).fit(*sst2["train"])


@pytest.mark.slow  # 16 s of a subprocess; the label descriptions themselves are tested through the API above
def test_cli_label_names_option(sst2, tmp_path: Path) -> None:
    data = tmp_path / "few.tsv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence", "label"])
        writer.writerows(zip(*sst2["train"], strict=True))
    descriptions = tmp_path / "labels.json"
    descriptions.write_text(json.dumps({"0": "negative", "1": "positive"}))
    # both forms of the option read the same; one trains end to end
    assert _label_descriptions("0=negative, 1=positive") == _label_descriptions(str(descriptions))
    for value in (str(descriptions),):
        run = subprocess.run(
            [
                *CMD,
                "train",
                data,
                "--strategy",
                "features",
                "--label-names",
                value,
                "--out",
                tmp_path / "m",
                "--json",
                "--overwrite",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads((tmp_path / "m" / "metrics.json").read_text())["label_texts"] == {
            "0": "negative",
            "1": "positive",
        }
    bad = subprocess.run(
        [*CMD, "train", data, "--label-names", "negative", "--out", tmp_path / "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--label-names 'negative': give LABEL=description pairs" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_text_finetune_on_two_cpu_processes(banking, tmp_path: Path) -> None:
    """``--devices 2`` on text: the head phase on cached features, then the encoder's later layers,
    each a DDP run of two processes; the model is written once and learns the intents."""
    data, test = tmp_path / "intents.csv", tmp_path / "test.csv"
    for path, (texts, labels) in ((data, banking["train"]), (test, banking["test"])):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("text", "category"), *zip(texts, labels, strict=True)])
    out = tmp_path / "model"
    args = ["--strategy", "finetune", "--accelerator", "cpu", "--devices", "2", "--out", out, "--json"]
    run = subprocess.run([*CMD, "train", data, "--test", test, *args], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["processes"] == 2 and metrics["test_accuracy"] >= BANKING_BAR
    assert load(out).predict(banking["test"][0][:3]) is not None
