"""The exported encoder rewritten for OpenVINO: attention's K transpose inside the fused MHA kernel.

TinyViT's window attention computes ``q @ k.transpose(-2, -1)`` on ``k`` viewed as
``(B, N, heads, d)``; the ONNX export writes both moves as one ``Transpose`` of order
``(0, 2, 3, 1)`` before the ``MatMul``. OpenVINO's MHA tokenizer does not take a K transpose of
that order into its fused attention subgraph, so it runs apart, as a generic transpose (1.2 ms of
stage 1's first block on the AMX Xeon). The same product written as
``Einsum("bhnd,bmhd->bhnm")`` is decomposed by OpenVINO into a form the subgraph absorbs:
3-4 % of the bf16 encoder there, with bit-identical embeddings (docs/speed.md, "the K side of the
window attention").

The rewrite is made on OpenVINO's own model, not in ``encoder.onnx``: ONNX Runtime reads that file
and runs an Einsum more slowly than the MatMul (766 against 719 ms). It is saved once per export
as OpenVINO IR beside the ONNX files (:data:`REWRITTEN_ENCODER`), written atomically
(:func:`~medisam.io.atomic.atomic_write`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from medisam.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: the rewritten encoder's file in the export folder (versioned: a new rewrite gets a new name)
REWRITTEN_ENCODER = "encoder.ov-kt.v1.xml"
K_ORDER = (0, 2, 3, 1)


def rewrite_k_transposes(model) -> int:  # noqa: ANN001 - an openvino Model, changed in place
    """Replace every ``MatMul(q, Transpose(k, (0, 2, 3, 1)))`` of 4D tensors by the equivalent
    ``Einsum("bhnd,bmhd->bhnm", q, k)``; returns how many were replaced."""
    from openvino import opset7

    replaced = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "MatMul":
            continue
        attrs = node.get_attributes()
        if attrs.get("transpose_a") or attrs.get("transpose_b"):
            continue
        k_side = node.input_value(1).get_node()
        if k_side.get_type_name() != "Transpose" or len(node.get_output_shape(0)) != 4:
            continue
        order = k_side.input_value(1).get_node()
        if order.get_type_name() != "Constant" or tuple(int(v) for v in order.get_data()) != K_ORDER:
            continue
        einsum = opset7.einsum([node.input_value(0), k_side.input_value(0)], "bhnd,bmhd->bhnm")
        einsum.set_friendly_name(node.get_friendly_name())
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(einsum.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def rewritten_encoder(export_dir: Path) -> Path:
    """``export_dir``'s encoder with its K transposes rewritten (:func:`rewrite_k_transposes`),
    made on first use; ``encoder.onnx`` itself where there is nothing to rewrite or it fails."""
    import openvino as ov

    source = export_dir / "encoder.onnx"
    target = export_dir / REWRITTEN_ENCODER
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    try:
        model = ov.Core().read_model(str(source))
        if rewrite_k_transposes(model) == 0:
            return source
        with atomic_write(target, force=True) as tmp:  # the .bin companion is moved in before the .xml
            ov.save_model(model, str(tmp), compress_to_fp16=False)
        return target
    except Exception as exc:  # an OpenVINO change must not break the backend: the plain graph still runs
        log.warning("OpenVINO attention rewrite failed (%s); using %s", exc, source.name)
        return source
