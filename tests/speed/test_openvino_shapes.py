"""Static-shape decoder compilations (openvino_shapes): when they are made, how many are kept,
and that they give the dynamic graph's outputs to the bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.models import openvino_shapes
from medisam.models.openvino_shapes import StaticShapes


class FakeCompiled:
    def __init__(self, shapes: dict | None = None):
        self.shapes = shapes


def _feeds(batch: int, points: int) -> dict[str, np.ndarray]:
    return {"image_tokens": np.zeros((1, 16, 4), np.float32),
            "point_coords": np.zeros((batch, points, 2), np.float32),
            "point_labels": np.zeros((batch, points), np.float32)}


def _shapes(made: list) -> StaticShapes:
    def compile_for(shapes: dict) -> FakeCompiled:
        made.append(shapes)
        return FakeCompiled(shapes)
    return StaticShapes(FakeCompiled(), compile_for, ("point_coords", "point_labels"))


def test_a_shape_is_compiled_on_its_second_use_and_reused():
    made: list = []
    shapes = _shapes(made)
    assert shapes.pick(_feeds(1, 2)) is shapes.dynamic and made == []
    second = shapes.pick(_feeds(1, 2))
    assert made == [{"point_coords": (1, 2, 2), "point_labels": (1, 2)}]
    assert second.compiled.shapes == made[0]
    assert shapes.pick(_feeds(1, 2)) is second and len(made) == 1


def test_a_compilation_in_one_thread_does_not_hold_up_the_others():
    """A shape compiles in the call that reaches its second use, outside the lock: another thread's
    decode of a compiled shape, or of the same shape on the dynamic graph, does not wait for it."""
    import threading

    release, started, made = threading.Event(), threading.Event(), []

    def compile_for(shapes: dict) -> FakeCompiled:
        if shapes["point_coords"][0] == 2:  # the second shape's compilation blocks until released
            started.set()
            assert release.wait(10)
        made.append(shapes)
        return FakeCompiled(shapes)

    shapes = StaticShapes(FakeCompiled(), compile_for, ("point_coords", "point_labels"))
    shapes.pick(_feeds(1, 2))
    first = shapes.pick(_feeds(1, 2))
    shapes.pick(_feeds(2, 2))
    compiling = threading.Thread(target=shapes.pick, args=(_feeds(2, 2),))
    compiling.start()
    assert started.wait(10)
    got: dict = {}

    def other_thread() -> None:
        got["compiled"] = shapes.pick(_feeds(1, 2))
        got["compiling"] = shapes.pick(_feeds(2, 2))

    other = threading.Thread(target=other_thread)
    other.start()
    other.join(5)
    finished = not other.is_alive()  # while the compilation is still blocked
    release.set()
    compiling.join()
    other.join()
    assert finished, "a decode waited for another shape's compilation"
    assert got["compiled"] is first and got["compiling"] is shapes.dynamic
    assert shapes.pick(_feeds(2, 2)) is not shapes.dynamic and len(made) == 2


def test_a_growing_click_sequence_stays_dynamic():
    made: list = []
    shapes = _shapes(made)
    for clicks in range(1, 20):  # one more point per click: never the same shape twice
        assert shapes.pick(_feeds(1, clicks + 1)) is shapes.dynamic
    assert made == []


def test_compilations_are_bounded_never_dropped_and_large_batches_stay_dynamic():
    made: list = []
    shapes = _shapes(made)
    for batch in (1, 2, 1, 3):
        for _ in range(2):
            shapes.pick(_feeds(batch, 2))
    assert len(shapes.shapes) == openvino_shapes.MAX_SHAPES == 2
    assert [dict(k)["point_coords"][0] for k in shapes.shapes] == [1, 2]  # the first two to reach a second use
    assert shapes.pick(_feeds(3, 2)) is shapes.dynamic  # full: a third shape stays dynamic
    assert shapes.pick(_feeds(1, 2)) is shapes.pick(_feeds(1, 2)) is not shapes.dynamic
    big = openvino_shapes.MAX_BATCH + 1
    for _ in range(3):
        assert shapes.pick(_feeds(big, 2)) is shapes.dynamic
    assert all(dict(m)["point_coords"][0] <= openvino_shapes.MAX_BATCH for m in made)


def test_the_switch_keeps_every_call_dynamic(monkeypatch):
    monkeypatch.setenv("MEDISAM_STATIC_DECODERS", "0")
    made: list = []
    shapes = _shapes(made)
    for _ in range(3):
        assert shapes.pick(_feeds(1, 2)) is shapes.dynamic
    assert made == []


def test_the_openvino_backend_decodes_on_static_shapes_with_the_same_outputs(monkeypatch):
    pytest.importorskip("openvino")
    from medisam.models import load_model

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    rng = np.random.default_rng(0)
    emb = model.encode(torch.from_numpy(rng.normal(size=(1, 3, 256, 256)).astype(np.float32)))
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    margins = torch.tensor([[40.0, 50.0, 150.0, 170.0], [36.0, 46.0, 154.0, 174.0], [30.0, 40.0, 160.0, 180.0]])
    points = (torch.tensor([[[90.0, 100.0], [20.0, 20.0]]]), torch.tensor([[1.0, 0.0]]))

    def calls() -> list:
        return [model.decode(emb, boxes=box) for _ in range(3)] + \
               [model.decode_best(emb, margins)[1] for _ in range(3)] + \
               [model.decode(emb, boxes=box, points=points) for _ in range(3)]

    calls()  # one-prompt feeds: their point counts' compilations are queued, off the calling thread
    assert model._fast_decoder.wait_warm(120)
    static = calls()
    assert model._fast_decoder.shapes == [] and model._fast_decoder.buckets == [2, 4]
    assert model._best_compiled.shapes == [(("point_coords", (3, 2, 2)), ("point_labels", (3, 2)))]
    monkeypatch.setenv("MEDISAM_STATIC_DECODERS", "0")
    dynamic = calls()
    for got, ref in zip(static, dynamic):
        assert torch.equal(got.low_res_logits, ref.low_res_logits) and torch.equal(got.iou, ref.iou)



def test_float_mode_kept_restores_the_threads_denormals_mode():
    from medisam.models.float_mode import denormals_flushed, float_mode_kept

    torch.set_flush_denormal(False)  # a known start
    with float_mode_kept():
        torch.set_flush_denormal(True)  # what OpenVINO's compile did to the calling thread
        assert denormals_flushed()
    assert not denormals_flushed()


def test_openvino_compiles_and_static_decoders_leave_the_calling_threads_floating_point_as_it_was(tmp_path,
                                                                                                 monkeypatch):
    """OpenVINO's denormals option set FTZ/DAZ on the thread that compiles: a fresh cache's first
    load, and every decoder compiled for a prompt shape, left numpy and scipy flushing denormals
    (scipy's KDTree crashed in a later surface-distance metric)."""
    pytest.importorskip("openvino")
    from medisam.models import load_model
    from medisam.models.float_mode import denormals_flushed

    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path))  # a fresh cache: every graph is exported and compiled
    torch.set_flush_denormal(False)  # a known start
    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    emb = model.encode(torch.zeros(1, 3, 256, 256))
    assert not denormals_flushed()
    for _ in range(3):
        model.decode(emb, boxes=torch.tensor([[40.0, 50.0, 150.0, 170.0]]))
        model.decode_best(emb, torch.tensor([[40.0, 50.0, 150.0, 170.0]] * 3))
    model.decode(emb, boxes=torch.tensor([[40.0, 50.0, 150.0, 170.0]]))
    model.encode(torch.zeros(3, 3, 256, 256))  # the streams encoder, compiled on first use
    assert model._fast_decoder.wait_warm(120) and model._fast_decoder.buckets == [2]  # compiled off this thread
    assert model._best_compiled.shapes  # the static graphs ran
    assert not denormals_flushed()


def test_threads_decoding_while_shapes_compile_get_the_dynamic_graphs_outputs(monkeypatch):
    """The server decodes for several sessions at once: threads that decode while another thread
    compiles their shapes get the dynamic graph's outputs, to the bit, before and after."""
    pytest.importorskip("openvino")
    import threading

    from medisam.models import load_model

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    emb = model.encode(torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, 256, 256)).astype(np.float32)))
    boxes = [torch.tensor([[40.0, 50.0, 150.0, 170.0]]),
             torch.tensor([[40.0, 50.0, 150.0, 170.0], [20.0, 20.0, 100.0, 90.0]])]
    monkeypatch.setenv("MEDISAM_STATIC_DECODERS", "0")
    ref = [model.decode(emb, boxes=b).low_res_logits.clone() for b in boxes]
    ref_best = model.decode_best(emb, boxes[1])[1].low_res_logits.clone()
    monkeypatch.setenv("MEDISAM_STATIC_DECODERS", "1")
    wrong: list = []

    def decode(worker: int) -> None:
        for k in range(8):
            if not torch.equal(model.decode(emb, boxes=boxes[k % 2]).low_res_logits, ref[k % 2]):
                wrong.append((worker, k, "decode"))
            if not torch.equal(model.decode_best(emb, boxes[1])[1].low_res_logits, ref_best):
                wrong.append((worker, k, "best"))

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert model._fast_decoder.wait_warm(120) and model._fast_decoder.buckets == [2]  # the box, in the background
    assert len(model._fast_decoder.shapes) == 1 and len(model._best_decoder().shapes) == 1  # the batch, best
    decode(-1)  # on the static graphs now
    assert wrong == []
