"""Wukong's image preprocessing as an ONNX graph, so that an export can take a decoded image of any size.

The graph does what ``wukong.data.resize.resize_square`` and the centre crop of prediction do:
resize the shorter side to the backbone's resize side (Pillow's rule for the other side), with
Pillow's antialiased bicubic filter (a = -0.5, weights renormalised at the borders: ONNX ``Resize``
with ``antialias=1`` and ``exclude_outside=1``), in Pillow's two passes (the width, then the height,
each rounded and clipped to 8 bits: bicubic overshoots, and Pillow clips in between), the centre square, then the
centre ``input_size`` crop, and scale to [0, 1]. Written with ``onnx.helper`` because no exporter
turns a resize whose output size depends on the input's into this graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 18  # Resize's antialias attribute
INPUT = "image"
OUTPUT = "pixels"
MODES = {"bicubic": "cubic", "bilinear": "linear", "nearest": "nearest"}


def preprocess_graph(resize_size: int, input_size: int, interpolation: str) -> Any:  # onnx.GraphProto
    """uint8 ``image`` (H, W, 3) RGB -> float32 ``pixels`` (1, 3, input_size, input_size) in [0, 1]."""
    side = float(resize_size)
    inner = int(round((resize_size - input_size) / 2.0))  # the centre crop inside the square
    consts = {
        "side_d": np.array(side, np.float64),
        "side_i": np.array([resize_size], np.int64),
        "two_i": np.array([2], np.int64),
        "inner_i": np.array([inner, inner], np.int64),
        "crop_i": np.array([input_size, input_size], np.int64),
        "hw_idx": np.array([0, 1], np.int64),
        "h_idx": np.array([0], np.int64),
        "w_idx": np.array([1], np.int64),
        "axes_hw": np.array([2, 3], np.int64),
        "one_three": np.array([1, 3], np.int64),
        "zero_f": np.array(0.0, np.float32),
        "max_f": np.array(255.0, np.float32),
        "inv_f": np.array(1.0 / 255.0, np.float32),
    }
    initializers = [numpy_helper.from_array(value, name) for name, value in consts.items()]
    n = helper.make_node
    nodes = [
        # the new size: the shorter side becomes `side`, the other keeps the aspect (Pillow's rounding)
        n("Shape", [INPUT], ["shape"]),
        n("Gather", ["shape", "hw_idx"], ["hw"]),
        n("Cast", ["hw"], ["hw_d"], to=TensorProto.DOUBLE),
        n("ReduceMin", ["hw_d"], ["short_d"], keepdims=1),
        n("Div", ["side_d", "short_d"], ["scale_d"]),
        n("Mul", ["hw_d", "scale_d"], ["scaled_d"]),
        n("Round", ["scaled_d"], ["rounded_d"]),
        n("Cast", ["rounded_d"], ["rounded_i"], to=TensorProto.INT64),
        n("Max", ["rounded_i", "side_i"], ["new_hw"]),
        # resize as Pillow does: the width, rounded to 8 bits, then the height, rounded again
        n("Cast", [INPUT], ["image_f"], to=TensorProto.FLOAT),
        n("Transpose", ["image_f"], ["chw"], perm=[2, 0, 1]),
        n("Unsqueeze", ["chw", "zero_axis"], ["nchw"]),
        n("Gather", ["shape", "h_idx"], ["old_h"]),
        n("Gather", ["new_hw", "w_idx"], ["new_w"]),
        n("Concat", ["one_three", "old_h", "new_w"], ["sizes_w"], axis=0),
        n("Concat", ["one_three", "new_hw"], ["sizes_hw"], axis=0),
        *_resize("nchw", "sizes_w", "wide", interpolation),
        *_resize("wide", "sizes_hw", "resized_8", interpolation),
        # the centre square, then the centre crop the network sees
        n("Sub", ["new_hw", "side_i"], ["spare"]),
        n("Div", ["spare", "two_i"], ["square_start"]),
        n("Add", ["square_start", "inner_i"], ["start"]),
        n("Add", ["start", "crop_i"], ["end"]),
        n("Slice", ["resized_8", "start", "end", "axes_hw"], ["cropped"]),
        n("Mul", ["cropped", "inv_f"], [OUTPUT]),
    ]
    initializers.append(numpy_helper.from_array(np.array([0], np.int64), "zero_axis"))
    return helper.make_graph(
        nodes,
        "wukong_preprocess",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["height", "width", 3])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 3, input_size, input_size])],
        initializer=initializers,
    )


def _resize(source: str, sizes: str, out: str, interpolation: str) -> list[Any]:
    """One resampling pass, then rounding and clipping to 8 bits as Pillow does between its passes."""
    n = helper.make_node
    return [
        n(
            "Resize",
            [source, "", "", sizes],
            [f"{out}_f"],
            mode=MODES.get(interpolation, "cubic"),
            cubic_coeff_a=-0.5,
            antialias=1,
            exclude_outside=1,
            coordinate_transformation_mode="half_pixel",
        ),
        n("Round", [f"{out}_f"], [f"{out}_r"]),
        n("Clip", [f"{out}_r", "zero_f", "max_f"], [out]),
    ]


def preprocess_model(resize_size: int, input_size: int, interpolation: str, ir_version: int) -> Any:
    """The graph as a model of its own (``onnx.compose.merge_models`` joins it to the network)."""
    model = helper.make_model(
        preprocess_graph(resize_size, input_size, interpolation), opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = ir_version
    return model
