"""A tiny ONNX "person segmenter" for rembg's code path: red-minus-green, thresholded, on 320x320 input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# rembg feeds (x / max - mean) / std per channel; undoing the std leaves R - G shifted by the means' difference.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def write_red_segmenter(path: Path, threshold: float = 0.3, sharpness: float = 20.0) -> Path:
    """Write a model whose output 1x1x320x320 is sigmoid(sharpness * ((R - G) / max - threshold)): red = person."""
    weight = np.array([_STD[0], -_STD[1], 0.0], np.float32).reshape(1, 3, 1, 1) * sharpness
    bias = np.array([sharpness * (_MEAN[0] - _MEAN[1] - threshold)], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "weight", "bias"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["mask"])],
        "red_segmenter",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 320, 320])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
