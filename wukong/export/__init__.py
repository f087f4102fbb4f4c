"""Exports that stand alone: ONNX (images and texts), int8 ONNX and TorchScript, each with the model's
classes and preprocessing in its metadata, and checked against ``predict_proba`` where labelled data
is at hand (the data given, or the test set the model was trained with).

- ``onnx``: images take float ``pixels`` (N, 3, S, S) in [0, 1] resized and cropped as the metadata
  says, or with ``any_size`` one uint8 RGB ``image`` (H, W, 3) of any size (resize and crop inside
  the graph: no Python needed); texts take ``input_ids`` and ``attention_mask`` from the tokenizer
  files written beside the export (``NAME.tokenizer/``).
- ``onnx-int8``: the same graph with onnxruntime's dynamic int8 quantisation; its accuracy change on
  the test set is measured and written in the metadata (labelled data is required).
- ``torchscript`` (``.pt``, ``torch.jit.load``) and ``torch-export`` (``.pt2``, ``torch.export.load``)
  for PyTorch users, the metadata in the archive as ``wukong.json``. TorchScript is deprecated in
  PyTorch; ``torch-export`` is its successor, with a free batch size (and text length).

The metadata is one JSON object: the ONNX model's ``wukong`` metadata property
(``session.get_modelmeta().custom_metadata_map["wukong"]``), or TorchScript's extra file.

Example:
    >>> import wukong
    >>> from wukong.export import export
    >>> info = export(wukong.load("runs/cat_dog"), "cat_dog.onnx", format="onnx", any_size=True)  # doctest: +SKIP
    >>> info["parity"]["max_abs_diff"] < 0.01                                                    # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wukong.artifact_io import apply_umask
from wukong.backbones.ngrams import NGRAM_BACKBONE
from wukong.data.sources import set_of_record
from wukong.errors import DataError, ParameterError

FORMATS = ("onnx", "onnx-int8", "torchscript", "torch-export")
SUFFIXES = {"onnx": ".onnx", "onnx-int8": ".onnx", "torchscript": ".pt", "torch-export": ".pt2"}
TORCH = ("torchscript", "torch-export")
# An int8 export that loses more accuracy than this on the test data is not written: quantisation
# error is amplified by a sharp classifier (a linear model with large weights on normalised
# embeddings) until the int8 model guesses; the fp32 export keeps the accuracy.
MAX_ACCURACY_LOSS = 0.02


def export(
    model: Any,
    out: str | Path,
    *,
    format: str = "onnx",
    any_size: bool = False,
    data: Any = None,
    labels: Any = None,
    max_accuracy_loss: float = MAX_ACCURACY_LOSS,
    unknown: bool = True,
) -> dict[str, Any]:
    """Write ``model`` to ``out`` in ``format``; return what was written, its metadata and its parity
    with ``predict_proba`` on labelled ``data`` (as ``evaluate`` takes it; default: the test set
    recorded at training, where there is one). An int8 export that loses more than
    ``max_accuracy_loss`` (a fraction) of accuracy on that data is refused, and nothing is written.
    ``unknown``: the unknown score as a second output (``unknown=False`` leaves out the bank of
    training features it needs: up to 4,096 x the feature size in float32)."""
    from wukong.export import check, graphs

    if format not in FORMATS:
        raise ParameterError(f"format={format!r}: choose one of {', '.join(FORMATS)}")
    if any_size and (format in TORCH or model.modality != "image"):
        raise ParameterError("any_size applies to ONNX exports of image models")
    if getattr(model, "backbone_name_", None) == NGRAM_BACKBONE:
        raise ParameterError(
            f"{NGRAM_BACKBONE}: this model is a TF-IDF linear model (auto found that transfer does not help), "
            "with no network to export; serve its folder with 'wukong serve', or predict with it"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if data is None:  # the test set recorded at training, where it still is
        data = set_of_record((getattr(model, "metrics_", None) or {}).get("test_data"))
    if format == "onnx-int8" and data is None:
        raise DataError(
            f"{out}: an int8 export needs labelled data to measure its accuracy change: pass --data "
            "(the model records no test set that is here)"
        )
    metadata = describe(model, format, any_size, unknown)
    ref = check.reference(model, data, labels) if data is not None else None
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".wukong-export-") as tmp:
        staged = Path(tmp) / f"model{SUFFIXES[format]}"
        tokenizer = write_tokenizer(model, Path(tmp) / "tokenizer") if model.modality == "text" else None
        if tokenizer is not None:
            metadata["tokenizer"] = f"{out.stem}.tokenizer"
        traced = format == "torchscript"
        program = graphs.torch_program(model, traced=traced, unknown=unknown) if format in TORCH else None
        if program is not None:
            graphs.save_torch(program, staged, json.dumps(metadata))
        else:
            graphs.write_onnx(model, staged, any_size=any_size, unknown=unknown)
        if ref is not None:
            metadata["parity"] = check.measure(model, check.export_runner(staged, tokenizer), ref, any_size=any_size)
        if format == "onnx-int8":
            staged = _quantise(staged, model, ref, tokenizer, any_size, metadata)
            change = metadata["int8"]["accuracy_change"]
            if change < -max_accuracy_loss:
                int8 = metadata["int8"]
                raise DataError(
                    f"{out}: int8 would lose {-change * 100:.1f} accuracy points on {int8['data']} "
                    f"({int8['accuracy_fp32_export']:.3f} -> {int8['accuracy_int8']:.3f}), more than the "
                    f"{max_accuracy_loss * 100:g} allowed; nothing written (the fp32 'onnx' export keeps the "
                    "accuracy; raise --max-accuracy-loss to write it anyway)"
                )
        if program is not None:  # saved again, with the parity measured on the first copy
            graphs.save_torch(program, staged, json.dumps(metadata))
        else:
            _set_onnx_metadata(staged, metadata)
        if tokenizer is not None:  # the files beside the export, replacing any earlier ones
            beside = out.with_name(metadata["tokenizer"])
            shutil.rmtree(beside, ignore_errors=True)
            os.replace(tokenizer, beside)
            apply_umask(beside)
        os.replace(staged, out)
    apply_umask(out)
    return {"path": str(out), "bytes": out.stat().st_size, **metadata}


KEEPS = (0.9, 0.95, 0.99)  # shares of known inputs kept, whose thresholds the metadata lists


def describe(model: Any, format: str, any_size: bool, unknown: bool = True) -> dict[str, Any]:
    """What a user of the export needs to know: classes, input, output, preprocessing, provenance."""
    import wukong

    info: dict[str, Any] = {
        "format": format,
        "wukong_version": wukong.__version__,
        "modality": model.modality,
        "classes": list(model.classes_),
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["batch", len(model.classes_)],
            "calibration": f"{'sigmoid' if model.multi_label_ else 'softmax'} of the logits divided by the "
            f"temperature {model.temperature_:g}"
            + (", plus offsets that divide out the training prior" if model.logit_offsets_ is not None else "")
            + ", inside the graph",
        },
        "strategy": model.strategy_,
        "backbone": (getattr(model, "metrics_", None) or {}).get("backbone"),
    }
    if model.multi_label_:
        info["multi_label"] = {
            "rule": "an input has every label whose probability reaches that label's threshold",
            "thresholds": {c: round(float(t), 6) for c, t in zip(model.classes_, model.thresholds_, strict=True)},
        }
    score = getattr(model, "open_set_", None)
    if score is not None and unknown:
        info["unknown_output"] = {
            "name": "unknown_score",
            "dtype": "float32",
            "shape": ["batch"],
            "score": f"{score.name}, as wukong predict --json gives it (higher: more like the training data)",
            "rule": "an input scoring below a threshold is 'none of these'",
            "thresholds": {f"keep {keep:g} of known inputs": round(score.threshold(keep), 6) for keep in KEEPS},
        }
    if model.modality == "text":
        info["input"] = {"names": ["input_ids", "attention_mask"], "dtype": "int64", "shape": ["batch", "tokens"]}
        info["preprocessing"] = {"max_length": model.encoder_.max_length, "tokenizer_files": "beside the export"}
        return info
    backbone = model.backbone_
    size = backbone.input_size
    if any_size:
        info["input"] = {"name": "image", "dtype": "uint8", "shape": ["height", "width", 3], "layout": "HWC, RGB"}
    else:
        info["input"] = {"name": "pixels", "dtype": "float32", "shape": ["batch", 3, size, size], "layout": "NCHW, RGB"}
        info["input"]["range"] = [0.0, 1.0]
    info["preprocessing"] = {
        "inside_graph": "resize, crop and normalisation" if any_size else "normalisation",
        "resize_shorter_side_to": backbone.resize_size,
        "interpolation": str(backbone.data_config.get("interpolation", "bicubic")),
        "centre_crop": size,
        "crop_pct": round(size / backbone.resize_size, 4),
        "mean": [float(v) for v in backbone.data_config["mean"]],
        "std": [float(v) for v in backbone.data_config["std"]],
        "jpeg_decoding": "Wukong decodes JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the "
        "shorter side at least the resize side (Pillow's draft mode; libjpeg scale_denom)",
    }
    return info


def write_tokenizer(model: Any, folder: Path) -> Path:
    """The encoder's tokenizer files in ``folder``, with truncation at the model's ``max_length`` and
    padding to the longest text set in ``tokenizer.json``."""
    from tokenizers import Tokenizer

    hf = getattr(model.encoder_, "_tokenizer", None)
    if hf is None:
        raise ParameterError(f"{model.backbone_name_}: not a plain text transformer; it cannot be exported")
    hf.save_pretrained(str(folder))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if model.encoder_.max_length:
        tok.enable_truncation(int(model.encoder_.max_length))
    tok.enable_padding(pad_id=int(hf.pad_token_id or 0), pad_token=str(hf.pad_token or "[PAD]"))
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _quantise(
    staged: Path, model: Any, ref: Any, tokenizer: Path | None, any_size: bool, metadata: dict[str, Any]
) -> Path:
    """Dynamic int8 quantisation (onnxruntime) of ``staged``, measured on the reference data
    (``check.Reference``) against the fp32 export."""
    from wukong.export import check

    quantised = staged.with_name("model.int8.onnx")
    kept_float = quantise_dynamic(staged, quantised)
    measured = check.measure(model, check.export_runner(quantised, tokenizer), ref, any_size=any_size)
    fp32 = metadata["parity"]
    metadata["int8"] = {
        "quantisation": "onnxruntime dynamic: int8 weights per channel, activations per batch",
        "left_in_float": f"{kept_float} depthwise convolutions" if kept_float else "nothing",
        "data": fp32["data"],
        "accuracy_fp32_export": fp32["accuracy_export"],
        "accuracy_int8": measured["accuracy_export"],
        "accuracy_change": measured["accuracy_export"] - fp32["accuracy_export"],
    }
    metadata["parity"] = measured
    return quantised


def quantise_dynamic(source: Path, target: Path) -> int:
    """onnxruntime's dynamic int8 quantisation, per-channel weights, depthwise convolutions left in
    float (quantised, they cost most of a network's accuracy: the README's Benchmarks), and so is
    the unknown score's similarity to the training features (its thresholds were measured in float);
    returns how many depthwise convolutions were left in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from wukong.export.graphs import quiet

    graph = onnx.load(str(source), load_external_data=False)
    depthwise = [
        node.name
        for node in graph.graph.node
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]
    unknown = [node.name for node in graph.graph.node if node.name.startswith("/unknown/")]
    with quiet():  # the quantiser logs each tensor it leaves in float
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=depthwise + unknown,
        )
    return len(depthwise)


def _set_onnx_metadata(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {"wukong": json.dumps(metadata), "classes": json.dumps(metadata["classes"])})
    onnx.save(graph, str(path))
