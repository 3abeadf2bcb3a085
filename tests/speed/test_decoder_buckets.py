"""Interactive prompts never wait for a decoder compilation: one-prompt feeds are padded to a few
point counts (openvino_shapes.POINT_BUCKETS) compiled on a background thread, and the padding
points (fast_decoder.PAD_LABEL) leave the outputs as they were."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from medisam.models.openvino_shapes import StaticShapes


class FakeCompiled:
    def __init__(self, shapes: dict | None = None):
        self.shapes = shapes


def _feeds(batch: int, points: int) -> dict[str, np.ndarray]:
    return {"image_tokens": np.zeros((1, 16, 4), np.float32),
            "point_coords": np.ones((batch, points, 2), np.float32),
            "point_labels": np.ones((batch, points), np.float32)}


def test_a_bucket_compiles_in_the_background_when_first_needed_and_serves_every_point_count_up_to_it():
    from medisam.models.fast_decoder import PAD_LABEL, pad_points

    made: list = []

    def compile_for(shapes: dict) -> FakeCompiled:
        made.append(threading.current_thread() is threading.main_thread())
        return FakeCompiled(shapes)

    shapes = StaticShapes(FakeCompiled(), compile_for, ("point_coords", "point_labels"), (2, 4, 8), pad_points)
    for points, bucket in ((2, 2), (3, 4), (4, 4), (5, 8), (8, 8)):  # a box; a box and 1, 2, 3, 6 clicks
        compiled, feeds = shapes.padded(_feeds(1, points))
        if bucket not in shapes.buckets:  # its first need: the dynamic graph, unpadded, its bucket queued
            assert compiled is shapes.dynamic and feeds["point_coords"].shape == (1, points, 2)
        assert shapes.wait_warm(10) and bucket in shapes.buckets
        for _ in range(3):
            compiled, feeds = shapes.padded(_feeds(1, points))
            assert compiled.compiled.shapes["point_coords"] == (1, bucket, 2)
            assert feeds["point_coords"].shape == (1, bucket, 2) and feeds["point_labels"].shape == (1, bucket)
            assert (feeds["point_labels"][0, points:] == PAD_LABEL).all()
            assert (feeds["point_labels"][0, :points] == 1).all() and (feeds["point_coords"][0, :points] == 1).all()
    assert shapes.buckets == [2, 4, 8]  # each compiled once, when first needed
    assert shapes.compile_count == 3 and made == [False] * 3  # nothing compiled in a call
    assert shapes.padded(_feeds(1, 9))[1]["point_coords"].shape == (1, 9, 2)  # more points: the old rules
    assert shapes.padded(_feeds(2, 2))[1]["point_coords"].shape == (2, 2, 2)  # several prompts too


def test_padding_points_leave_the_fast_graphs_outputs_as_they_were():
    """The fast graph given a prompt padded with PAD_LABEL points returns the unpadded prompt's logits
    and IoU (fp32 torch), where SAM's own pad label (-1) would move them."""
    from medisam.models import load_model
    from medisam.models.fast_decoder import FastPromptDecoderGraph, image_tokens, pad_points, unshuffle_masks

    model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    graph = FastPromptDecoderGraph(model.net.cpu().eval(), model.spec.input_size).eval()
    side = int(model.net.prompt_encoder.image_embedding_size[0])
    tokens = torch.from_numpy(image_tokens(np.random.default_rng(0).normal(size=(1, 256, side, side))
                                           .astype(np.float32)))
    whole = torch.tensor([0, side, 0, side])
    coords = np.array([[[90.0, 100.0], [40.0, 50.0], [150.0, 170.0]]], np.float32)
    labels = np.array([[1.0, 2.0, 3.0]], np.float32)
    with torch.no_grad():
        ref = graph(tokens, torch.from_numpy(coords), torch.from_numpy(labels), whole)
        for count in (4, 8):
            c, lab = pad_points(coords, labels, count)
            got = graph(tokens, torch.from_numpy(c), torch.from_numpy(lab), whole)
            assert np.abs(unshuffle_masks(got[0].numpy(), slice(None))
                          - unshuffle_masks(ref[0].numpy(), slice(None))).max() < 1e-4
            assert (got[1] - ref[1]).abs().max() < 1e-4
        sam_pad = graph(tokens, torch.from_numpy(np.concatenate([coords, np.zeros((1, 1, 2), np.float32)], 1)),
                        torch.from_numpy(np.concatenate([labels, [[-1.0]]], 1)), whole)
        assert (sam_pad[1] - ref[1]).abs().max() > 1e-4  # a real token: the check above can tell


def _wait_for_warm_up(timeout: float = 120.0) -> None:
    """Wait for the backend's background compilations, where there are any."""
    for thread in threading.enumerate():
        if thread.name == "medisam-decoder-warm":
            thread.join(timeout)


def test_openvino_interactive_prompts_compile_nothing_after_the_warm_up_and_keep_their_masks(monkeypatch):
    """A box, a box and 1 or 3 clicks, points alone and a mask prompt compile nothing in their call
    (the buckets and, after the first click, the full decoder compile in the background); padded fp32
    masks equal the unpadded dynamic graph's and torch's."""
    pytest.importorskip("openvino")
    from medisam.models import load_model

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32")
    reference = load_model("litemedsam-tiny", device="cpu", backend="torch")
    emb = model.encode(torch.from_numpy(np.random.default_rng(2).normal(size=(1, 3, 256, 256)).astype(np.float32)))
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    clicks = (torch.tensor([[[90.0, 100.0], [60.0, 80.0], [120.0, 90.0]]]), torch.tensor([[1.0, 0.0, 1.0]]))
    prompts = [dict(boxes=box), dict(boxes=box, points=(clicks[0][:, :1], clicks[1][:, :1])),
               dict(boxes=box, points=clicks), dict(points=(clicks[0][:, :2], clicks[1][:, :2]))]
    compiles: list = []
    compile_ = model._compile

    def counted(*args, **kwargs):  # noqa: ANN202 - a compile in the calling thread is one a user waits for
        if threading.current_thread() is threading.main_thread():
            compiles.append(args)
        return compile_(*args, **kwargs)
    monkeypatch.setattr(model, "_compile", counted)
    first = [model.decode(emb, **p) for p in prompts]  # each queues its bucket (a click: the full decoder too)
    _wait_for_warm_up()
    got = [model.decode(emb, **p) for p in prompts for _ in range(3)]
    masked = [model.decode(emb, boxes=box, mask_input=got[0].low_res_logits[:, :1] * 0 + 1.0) for _ in range(2)]
    assert set(model._fast_decoder.buckets) >= {2, 4} and model._full_decoder is not None
    assert compiles == [], f"{len(compiles)} compilations in the calls"
    monkeypatch.setenv("MEDISAM_STATIC_DECODERS", "0")  # the dynamic graph, unpadded
    with torch.no_grad():
        for i, p in enumerate(prompts):
            dynamic = model.decode(emb, **p)
            torch_fp32 = reference.decode(emb, **p)
            for out in [first[i], *got[3 * i:3 * i + 3]]:
                assert (out.low_res_logits - dynamic.low_res_logits).abs().max() < 1e-3
                assert (out.low_res_logits - torch_fp32.low_res_logits).abs().max() < 1e-3
                assert torch.equal(out.low_res_logits > 0, torch_fp32.low_res_logits > 0)
    assert torch.equal(masked[0].low_res_logits, masked[1].low_res_logits)
