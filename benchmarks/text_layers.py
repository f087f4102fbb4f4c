"""Where transfer helps on text, measured before building it into ``auto`` (issue 17's text half).

For SST-2 and BANKING77 at 5, 10, 20 and 100 labelled texts per class (three seeded samples below
100, one at 100; BANKING77 intents with fewer texts give all they have), side by side on the full
test file:

- ``final``: what ``features`` fits today: Wukong's cross-validated logistic regression on the
  sentence embedding (all-MiniLM-L6-v2: mean pooling, unit length);
- ``layer1`` .. ``layer6``: the same classifier on the mean-pooled output of each transformer layer
  (attention mask applied), all read in one pass (``output_hidden_states``);
- ``layers5+6``, ``layers1-6``: concatenations of those;
- ``tfidf``: the no-transfer model a user would write by hand: scikit-learn TF-IDF of word 1-2-grams
  and character 2-5-grams, ``LogisticRegression`` with C chosen by 5-fold cross-validated log loss.

Each row's cross-validated log loss is recorded too, so that selection rules can be compared offline.
Two rows apply the image rule to the network's rows (TF-IDF left out: it has no out-of-fold logits
here): ``one_se``, the simplest row within one standard error of the lowest loss, and ``blend``,
that row blended with the others as images ``auto`` blends its candidates
(``wukong.strategies.features.blend_members``; the row alone where blending does not pay).

    python benchmarks/text_layers.py   # writes benchmarks/results/text_layers.json (~20 min on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from text import DATA, _machine, _write, per_class_sample  # noqa: E402

SETS = {"sst2": ("sst2/train.tsv", "sst2/test.tsv"), "banking77": ("banking77/train.csv", "banking77/test.csv")}
POOL = 100


def layer_means(texts: list[str], batch: int = 64) -> np.ndarray:
    """(texts, layers + 1, dim): the mean-pooled hidden states of the default text encoder, the
    embedding layer first, in one pass per batch."""
    from wukong.backbones.text import load_sentence_transformer

    model = load_sentence_transformer("all-MiniLM-L6-v2", device="cpu").eval()
    transformer = model[0].auto_model
    out = []
    for start in range(0, len(texts), batch):
        tokens = model.tokenizer(
            texts[start : start + batch], padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            states = transformer(**tokens, output_hidden_states=True).hidden_states
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        out.append(torch.stack([(s * mask).sum(1) / mask.sum(1) for s in states], 1).numpy())
    return np.concatenate(out)


def rows_of(layers: np.ndarray) -> dict[str, np.ndarray]:
    final = layers[:, -1] / np.linalg.norm(layers[:, -1], axis=1, keepdims=True)
    rows = {"final": final, **{f"layer{k}": layers[:, k] for k in range(1, layers.shape[1])}}
    rows["layers5+6"] = layers[:, -2:].reshape(len(layers), -1)
    rows["layers1-6"] = layers[:, 1:].reshape(len(layers), -1)
    return rows


def tfidf(train: list[str], labels: np.ndarray, test: list[str], test_labels: np.ndarray) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_union

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
    vectoriser = make_union(words, chars)
    x = vectoriser.fit_transform(train)
    folds = StratifiedKFold(int(min(5, np.bincount(labels).min())), shuffle=True, random_state=0)
    grid = {"C": [0.1, 1.0, 10.0, 100.0]}
    search = GridSearchCV(LogisticRegression(max_iter=3000), grid, cv=folds, scoring="neg_log_loss").fit(x, labels)
    accuracy = float((search.predict(vectoriser.transform(test)) == test_labels).mean())
    return {"accuracy": round(accuracy, 4), "cv_loss": round(-float(search.best_score_), 4)}


def image_rule(names: list[str], fits: list[Any], logits: list[np.ndarray], truth: np.ndarray) -> dict[str, Any]:
    """The ``one_se`` and ``blend`` rows: what images ``auto``'s rule keeps among these rows."""
    from wukong.strategies.features import blend_members, one_standard_error_choice

    start = one_standard_error_choice([(f.info["cv_loss"], f.info["cv_loss_se"], f.weight.shape[1]) for f in fits])
    found = blend_members(fits, start)
    members = found.members if found is not None else [start]
    blended = np.mean([logits[i] for i in members], axis=0)

    def accuracy(z: np.ndarray) -> float:
        return round(float((z.argmax(axis=1) == truth).mean()), 4)

    return {
        "one_se": {"accuracy": accuracy(logits[start]), "kept": names[start]},
        "blend": {"accuracy": accuracy(blended), "kept": [names[i] for i in members]},
    }


def one_set(name: str, sizes: list[int], samples: int) -> dict[str, Any]:
    from wukong.data.text import read_text_table
    from wukong.strategies.features import fit_linear_classifier

    train_file, test_file = SETS[name]
    train = read_text_table(DATA / train_file)
    test = read_text_table(DATA / test_file, classes=train.classes)
    classes = {c: i for i, c in enumerate(train.classes)}
    pool = train.subset(per_class_sample(train.labels, POOL, seed=0))
    pool_labels = np.array([classes[c] for c in pool.labels])
    test_labels = np.array([classes[c] for c in test.labels])
    started = time.time()
    pool_rows, test_rows = rows_of(layer_means(list(pool.texts))), rows_of(layer_means(list(test.texts)))
    result: dict[str, Any] = {"encoding_seconds": round(time.time() - started, 1), "sizes": {}}
    for size in sizes:
        runs = []
        for seed in range(samples if size < POOL else 1):
            pick = np.array(per_class_sample([str(x) for x in pool_labels], size, seed=seed))
            run: dict[str, Any] = {}
            fits, logits = [], []
            for row, feats in pool_rows.items():
                fit = fit_linear_classifier(feats[pick], pool_labels[pick], len(classes))
                fits.append(fit)
                logits.append((test_rows[row] @ fit.weight.T + fit.bias) / fit.temperature)
                predicted = logits[-1].argmax(axis=1)
                run[row] = {"accuracy": round(float((predicted == test_labels).mean()), 4)}
                run[row].update(cv_loss=fit.info["cv_loss"], cv_loss_se=fit.info["cv_loss_se"])
            run.update(image_rule(list(pool_rows), fits, logits, test_labels))
            texts = [pool.texts[i] for i in pick]
            run["tfidf"] = tfidf(texts, pool_labels[pick], list(test.texts), test_labels)
            runs.append(run)
        mean = {row: round(float(np.mean([r[row]["accuracy"] for r in runs])), 4) for row in runs[0]}
        result["sizes"][str(size)] = {"samples": len(runs), "accuracy": mean, "runs": runs}
        print(name, size, mean, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[5, 10, 20, POOL])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "text_layers.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": _machine(), "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "sets": {}}
    for name in args.sets:
        report["sets"][name] = one_set(name, args.sizes, args.samples)
        _write(args.out, report)


if __name__ == "__main__":
    main()
