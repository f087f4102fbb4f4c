"""Strategy ``auto``: choose how to transfer from the data, and say why.

The classic rule (Yosinski et al. 2014; CS231n "Transfer Learning" notes) crosses two factors:

| examples per class | similar to the pretraining data      | different                             |
|--------------------|--------------------------------------|---------------------------------------|
| small  (< 50)      | linear classifier on top features    | linear classifier on earlier features |
| medium (50-999)    | fine-tune the later blocks           | fine-tune the later blocks            |
| large  (>= 1000)   | fine-tune the later blocks           | fine-tune everything                  |

Size is counted; similarity, and whether transfer helps at all, is *measured*. With small data, the
linear classifier is cross-validated on every candidate: the top features, each stage's pooled
features, the stage before the top with the top, all of them together, and raw pixels (no transfer:
the baseline every transfer must beat). The simplest candidate (fewest features) within one standard
error of the lowest cross-validated loss is kept (``strategies.features.one_standard_error_choice``).
Beyond small data, the best of those linear classifiers and the fine-tuned network are both
measured on the held-out validation set and the more accurate is kept, so data unlike the
pretraining set gets fine-tuning only where it pays. ``benchmarks/auto.py`` measures the regret
of these choices on photos, scans, drawings and textures.
"""

from __future__ import annotations

from dataclasses import dataclass

SMALL = 50
LARGE = 1000


@dataclass
class Choice:
    strategy: str  # "features" | "head" | "finetune"
    unfreeze: int | str  # blocks to fine-tune ("all" or a count)
    reason: str


def choose(
    per_class_min: int, per_class_median: float, *, stages: int, small: int = SMALL, large: int = LARGE
) -> Choice:
    """The size half of the rule; ``features`` then measures similarity to pick its tap."""
    if per_class_min < small:
        return Choice(
            "features",
            0,
            f"small data ({per_class_min} examples in the smallest class, < {small}): a linear classifier "
            "on frozen features is the most accurate and does not overfit",
        )
    if per_class_median < large:
        blocks = min(2, stages) if stages else "all"
        return Choice(
            "finetune",
            blocks,
            f"medium data ({per_class_min}-{int(per_class_median)} examples per class): fine-tune the later "
            f"{blocks} block(s) with smaller learning rates than the new head",
        )
    return Choice(
        "finetune",
        "all",
        f"large data (median {int(per_class_median)} examples per class >= {large}): fine-tune the whole "
        "network from its pretrained start",
    )


# --- text: the rule for sentence encoders ------------------------------------------------------
# Whether transfer helps at all is measured first (``TextClassifier._transfer_or_not``: the sentence
# embedding against TF-IDF n-grams, cross-validated); this is the rule for when it does.

# Below this many examples in the median class, contrastive few-shot tuning beats fine-tuning with
# a classification loss (few examples, but quadratically many pairs); from here on, fine-tuning the
# whole encoder wins. Measured on BANKING77 (held-out part of train) and SST-2 dev: see the report.
FEWSHOT_BELOW = 50
# The default encoder stays all-MiniLM-L6-v2 even where all-mpnet-base-v2 is installed: the same command
# must give the same model on every machine. Few-shot data gains the most from the larger encoder
# (benchmarks/text.py, mpnet rows), so there ``auto`` says it is there.
BETTER_FEWSHOT_ENCODER = "all-mpnet-base-v2"
MPNET_HINT = (
    f"; {BETTER_FEWSHOT_ENCODER} is installed: --preset best (backbone='{BETTER_FEWSHOT_ENCODER}') is usually "
    "more accurate on few examples, at several times the fit time"
)


def choose_text_strategy(per_class_min: int, per_class_median: float, fewshot_below: int = FEWSHOT_BELOW) -> Choice:
    """Pick how to transfer a sentence encoder from the number of examples per class, and say why.

    The typical (median) class decides between few-shot tuning and fine-tuning: a few small classes
    do not make a data set few-shot (BANKING77's smallest class has 35 examples, its median 120,
    and fine-tuning beats few-shot tuning there: 94.1% to 93.4% on its test set).
    """
    if per_class_min < 2:
        return Choice(
            "features",
            0,
            f"a class has {per_class_min} example: too few to form same-class pairs or to fine-tune; "
            "a linear classifier on the frozen sentence embeddings",
        )
    if per_class_median < fewshot_below:
        return Choice(
            "fewshot",
            0,
            f"few examples ({per_class_min}-{int(per_class_median)} per class, median < {fewshot_below}): "
            "tune the encoder contrastively on same/different-class pairs (many more pairs than examples), "
            "then a linear classifier on its embeddings (SetFit)",
        )
    return Choice(
        "finetune",
        "all",
        f"enough data ({per_class_min}-{int(per_class_median)} examples per class, median >= {fewshot_below}): "
        "fine-tune the whole encoder with the new head, at a smaller learning rate for pretrained weights",
    )
