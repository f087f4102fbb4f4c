"""Running an export as its user would, on labelled data, beside ``predict_proba``: parity and accuracy.

Image inputs reach an export the way a user without Wukong would give them: for ``pixels`` graphs, the
images resized and cropped as the metadata says; for ``any_size`` graphs, each file decoded whole
(Pillow, EXIF rotation applied) and nothing else. Texts go through the exported ``tokenizer.json``
with the ``tokenizers`` library, not through Wukong's encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wukong.data.augment import ArrayImageDataset
from wukong.data.decode import open_image
from wukong.data.labelled import origin_of
from wukong.export.graphs import quiet

BATCH = 32


Outputs = tuple[np.ndarray, ...]  # an export's outputs: probabilities, and the unknown score where it has one


def export_runner(path: Path, tokenizer: Path | None = None) -> Callable[[Any], Outputs]:
    """``run(inputs) -> outputs`` for an exported file: pixels (N, 3, S, S), one image (H, W, 3)
    uint8, or a list of texts (with the export's ``tokenizer``)."""
    if path.suffix in (".pt", ".pt2"):
        with quiet():  # TorchScript's deprecation notice, torch.export's chatter
            module = torch.jit.load(str(path)).eval() if path.suffix == ".pt" else torch.export.load(str(path)).module()

        def run_pytorch(inputs: Any) -> Outputs:
            with torch.inference_mode():
                tensors = inputs if isinstance(inputs, tuple) else (inputs,)
                out = module(*(torch.from_numpy(np.asarray(t)) for t in tensors))
                return tuple(o.numpy() for o in (out if isinstance(out, tuple | list) else (out,)))

        return _with_tokens(run_pytorch, tokenizer)
    from wukong.engine import onnx_session

    session = onnx_session(path)
    names = [i.name for i in session.get_inputs()]

    def run_onnx(inputs: Any) -> Outputs:
        tensors = inputs if isinstance(inputs, tuple) else (inputs,)
        return tuple(session.run(None, dict(zip(names, tensors, strict=True))))

    return _with_tokens(run_onnx, tokenizer)


def _with_tokens(run: Callable[[Any], Outputs], tokenizer: Path | None) -> Callable[[Any], Outputs]:
    if tokenizer is None:
        return run
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))  # truncation and padding set in the file

    def run_texts(texts: Sequence[str]) -> Outputs:
        out = []
        for start in range(0, len(texts), BATCH):
            encoded = tok.encode_batch(list(texts[start : start + BATCH]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            out.append(run((ids, mask)))
        return _joined(out)

    return run_texts


def _joined(batches: list[Outputs]) -> Outputs:
    """The outputs of several batches, each output concatenated."""
    return tuple(np.concatenate(parts) for parts in zip(*batches, strict=True))


def export_outputs(model: Any, run: Callable[[Any], Outputs], examples: Any, *, any_size: bool) -> Outputs:
    """What the export gives for ``examples`` (as ``model._read_labelled`` read them)."""
    if model.modality == "text":
        return run(list(examples.texts))
    if any_size:
        # each decoded in full, as a user's own code would (no reduced-scale JPEG decoding)
        return _joined([run(np.asarray(open_image(source)[0])) for source in examples.sources])
    backbone = model.backbone_
    crop = backbone.input_size / backbone.resize_size
    dataset = ArrayImageDataset(examples.pixels, examples.labels, backbone.input_size, train=False, crop_pct=crop)
    out = []
    for start in range(0, len(dataset), BATCH):
        batch = torch.stack([dataset[i][0] for i in range(start, min(start + BATCH, len(dataset)))])
        out.append(run(batch.numpy().astype(np.float32) / 255.0))
    return _joined(out)


@dataclass
class Reference:
    """Labelled data read once, with what ``predict_proba`` gives on it: what every export is compared to."""

    origin: str
    examples: Any
    labels: np.ndarray
    expected: np.ndarray
    unknown: np.ndarray | None = None  # the model's unknown scores, where it has an open-set score


def reference(model: Any, data: Any, labels: Any = None) -> Reference:
    """Read labelled ``data`` (as ``evaluate`` takes it) and predict it with ``model``."""
    labelled, _ = model._read_known(data, labels, "evaluation")
    _, prepared = model._inputs_of(labelled.examples)
    expected, unknown, _ = model._outputs(prepared)
    return Reference(origin_of(data), labelled.examples, np.asarray(labelled.labels), expected, unknown)


def measure(model: Any, run: Callable[[Any], Outputs], ref: Reference, *, any_size: bool = False) -> dict[str, Any]:
    """The export against ``predict_proba`` on the reference data: max and mean absolute difference of
    the probabilities, how often the top class differs (multi-label: how many input-label decisions
    differ at the model's thresholds), both accuracies (multi-label: subset accuracies); and the
    unknown score's largest difference and how many "unknown" answers differ at ``unknown_keep``."""
    got, *unknown = export_outputs(model, run, ref.examples, any_size=any_size)
    diff = np.abs(got - ref.expected)
    measured = {"data": ref.origin, "examples": int(len(ref.labels)), "max_abs_diff": float(diff.max())}
    measured["mean_abs_diff"] = float(diff.mean())
    measured["model_bf16"] = bool(model.bf16_)  # its bf16 autocast setting; the export is fp32
    if unknown and ref.unknown is not None:
        threshold = model.open_set_.threshold(model.unknown_keep)
        measured["unknown_score_max_abs_diff"] = float(np.abs(unknown[0] - ref.unknown).max())
        measured["unknown_answers_differ"] = int(((unknown[0] < threshold) != (ref.unknown < threshold)).sum())
    if model.multi_label_:
        mine, theirs, truth = model._decide(ref.expected), model._decide(got), ref.labels.astype(bool)
        measured["decision_disagreements"] = int((mine != theirs).sum())
        measured["accuracy_model"] = float((mine == truth).all(axis=1).mean())
        measured["accuracy_export"] = float((theirs == truth).all(axis=1).mean())
        return measured
    measured["top1_disagreements"] = int((got.argmax(1) != ref.expected.argmax(1)).sum())
    measured["accuracy_model"] = float((ref.expected.argmax(1) == ref.labels).mean())
    measured["accuracy_export"] = float((got.argmax(1) == ref.labels).mean())
    return measured
