"""Deployment exports: ONNX graphs of a loaded model (encoder + prompt decoder) with metadata."""

from medisam.export.onnx_export import (DEFAULT_OPSET, OnnxExport, PromptDecoderGraph, export_onnx,
                                        read_export_metadata)

__all__ = ["DEFAULT_OPSET", "OnnxExport", "PromptDecoderGraph", "export_onnx", "read_export_metadata"]
