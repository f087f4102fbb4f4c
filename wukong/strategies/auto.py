"""Strategy ``auto``: choose how to transfer from the data, and say why.

The classic rule (Yosinski et al. 2014; CS231n "Transfer Learning" notes) crosses two factors:

| examples per class | similar to the pretraining data      | different                             |
|--------------------|--------------------------------------|---------------------------------------|
| small  (< 50)      | linear classifier on top features    | linear classifier on earlier features |
| medium (50-999)    | fine-tune the later blocks           | fine-tune the later blocks            |
| large  (>= 1000)   | fine-tune the later blocks           | fine-tune everything                  |

Size is counted. Similarity is *measured*, where it is cheap and matters (small data): the linear
classifier is cross-validated on the top features and on an earlier stage's, and the better one
is kept. Fine-tuning adapts every unfrozen layer anyway, so for larger data similarity only
decides how much to unfreeze. The line between small and medium: from there on, a short fine-tune
of the later blocks clearly beats the linear classifier on an ImageNet network; below it, the gain
is small for many times the time (the image benchmark measures both on CIFAR-10 with 20 and 100
labels per class, of which 20% are held out).
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


def choose(per_class_min: int, per_class_median: float, *, stages: int) -> Choice:
    """The size half of the rule; ``features`` then measures similarity to pick its tap."""
    if per_class_min < SMALL:
        return Choice(
            "features",
            0,
            f"small data ({per_class_min} examples in the smallest class, < {SMALL}): a linear classifier "
            "on frozen features is the most accurate and does not overfit",
        )
    if per_class_median < LARGE:
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
        f"large data (median {int(per_class_median)} examples per class >= {LARGE}): fine-tune the whole "
        "network from its pretrained start",
    )
