"""ONNX export: graph parity with PyTorch, metadata, and the CLI's --force behaviour."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from medisam.cli import main
from medisam.errors import OutputExistsError
from medisam.export import export_onnx, read_export_metadata
from medisam.metrics_basic import dice
from medisam.models import load_model

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_export(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("export"))


def _decode_onnx(session, embedding, coords, labels, mask=None):
    size = 256
    feeds = {"image_embeddings": embedding.numpy(), "point_coords": coords.astype(np.float32),
             "point_labels": labels.astype(np.float32),
             "mask_input": (np.zeros((1, 1, size, size), np.float32) if mask is None else mask),
             "has_mask_input": np.array([0.0 if mask is None else 1.0], np.float32)}
    return session.run(None, feeds)


def test_encoder_and_decoder_graphs_match_torch(tiny_model, tiny_export):
    enc = ort.InferenceSession(str(tiny_export.encoder), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tiny_export.decoder), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    emb = tiny_model.encode(x)
    emb_onnx = enc.run(None, {"image": x.numpy()})[0]
    assert np.abs(emb_onnx - emb.numpy()).max() < 1e-4

    # one box = corners with labels 2/3, as SAM's own ONNX export
    box = torch.tensor([[30.0, 40.0, 150.0, 170.0]])
    ref = tiny_model.decode(emb, boxes=box)
    low, iou = _decode_onnx(dec, emb, box.numpy().reshape(1, 2, 2), np.array([[2, 3]]))
    assert np.abs(low[:, :1] - ref.low_res_logits.numpy()).max() < 1e-4
    assert np.abs(iou[:, :1] - ref.iou.numpy()).max() < 1e-4
    assert dice(low[0, 0] > 0, ref.low_res_logits.numpy()[0, 0] > 0) >= 0.999

    # dynamic number of points (3 clicks + padding) with a mask prompt, multimask outputs
    pts = torch.tensor([[[100.0, 100.0], [20.0, 200.0], [60.0, 80.0]]])
    lab = torch.tensor([[1, 0, 1]])
    mask = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(2))
    ref = tiny_model.decode(emb, points=(pts, lab), mask_input=mask, multimask=True)
    coords = np.concatenate([pts.numpy(), np.zeros((1, 1, 2), np.float32)], axis=1)
    low, _ = _decode_onnx(dec, emb, coords, np.array([[1, 0, 1, -1]]), mask.numpy())
    assert low.shape == (1, 4, 256, 256)
    assert np.abs(low[:, 1:] - ref.low_res_logits.numpy()).max() < 1e-4


def test_metadata_records_model_preprocessing_and_opset(tiny_model, tiny_export):
    meta = read_export_metadata(tiny_export.folder)
    assert meta["model"] == "litemedsam-tiny"
    assert meta["input_size"] == 256 and meta["opset"] == 17
    assert meta["checkpoint_sha256"] is None  # random test weights
    assert meta["preprocessing"]["intensity"] == "minmax"
    assert meta["preprocessing"]["interpolation"] == "area"
    assert meta["decoder"]["inputs"][1:3] == ["point_coords", "point_labels"]


def test_export_refuses_existing_files_without_force(tiny_model, tiny_export):
    with pytest.raises(OutputExistsError):
        export_onnx(tiny_model, tiny_export.folder)


def test_cli_export_onnx_and_force(tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", "onnx", "--model", "litemedsam-tiny", "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"encoder.onnx", "decoder.onnx", "metadata.json"}
    before = (out / "encoder.onnx").stat().st_mtime_ns
    assert main(["export", "onnx", "--model", "litemedsam-tiny", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "encoder.onnx").stat().st_mtime_ns == before  # nothing rewritten
    assert main(["export", "onnx", "--model", "litemedsam-tiny", "-o", str(out), "--force"]) == 0
    assert json.loads((out / "metadata.json").read_text())["model"] == "litemedsam-tiny"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_cli_export_unknown_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", "onnx", "--model", "nope", "-o", str(tmp_path / "x")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("opset", [5, 99])
def test_cli_export_opset_out_of_range_is_one_line_before_the_model_and_leaves_no_folder(tmp_path, capsys, opset,
                                                                                        monkeypatch):
    """It was a torch traceback after the model loaded (25 s with LiteMedSAM), and an empty folder."""
    import medisam.models

    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["export", "onnx", "--model", "litemedsam-tiny", "-o", str(tmp_path / "x"), "--opset", str(opset)]) == 2
    assert f"opset {opset} is not supported: the graphs export at opsets 12.." in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_failed_export_removes_the_folder_it_made(tiny_model, tmp_path, monkeypatch):
    from medisam.export import onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(onnx_export, "export_graphs", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        onnx_export.export_onnx(tiny_model, tmp_path / "new" / "x")
    assert not (tmp_path / "new" / "x").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError):
        onnx_export.export_onnx(tiny_model, kept)
    assert kept.is_dir() and not any(kept.iterdir())  # a folder the user had stays, and holds nothing of it


def test_export_copy_of_tinyvit_uses_4d_permutes_and_computes_the_same(tiny_model):
    """The export copy swaps TinyViT's token<->map moves (fewer slow 3D transposes in
    OpenVINO) and splits each window attention's qkv projection into three (no VariadicSplit);
    the swapped encoder gives the loaded model's embedding."""
    import copy

    from medisam.export.onnx_export import export_friendly
    from medisam.export.tinyvit_export import channels_last_friendly

    exported = export_friendly(tiny_model.net)
    swapped = [m for m in exported.image_encoder.modules() if "forward" in m.__dict__]
    assert {type(m).__name__ for m in swapped} == {"PatchMerging", "TinyViTBlock", "Attention"}
    assert not any("forward" in m.__dict__ for m in tiny_model.net.modules())  # the loaded model untouched
    net = copy.deepcopy(tiny_model.net).eval()
    assert channels_last_friendly(net) == len(swapped)
    image = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = net.image_encoder(image), tiny_model.net.eval().image_encoder(image)
    # the same products, in GEMMs of other widths: equal up to float32 summation order
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    attn = next(m for m in exported.image_encoder.modules() if type(m).__name__ == "Attention")
    x = torch.rand(1, 3, attn.norm.normalized_shape[0], generator=torch.Generator().manual_seed(1))
    normed = attn.norm(x)
    heads = attn.qkv(normed).view(1, 3, attn.num_heads, -1)  # the original split, head by head
    kd = attn.key_dim
    for name, rows in (("q", heads[..., :kd]), ("k", heads[..., kd:2 * kd]), ("v", heads[..., 2 * kd:])):
        weight, bias = getattr(attn, f"{name}_weight"), getattr(attn, f"{name}_bias")
        own = torch.nn.functional.linear(normed, weight, bias).view(1, 3, attn.num_heads, -1)
        torch.testing.assert_close(own, rows, msg=f"{name}: not the rows the split sent it")
    assert channels_last_friendly(torch.nn.Sequential(torch.nn.Linear(2, 2))) == 0  # other encoders left alone


@pytest.mark.parametrize("integer_boxes", [False, True])
def test_a_consumer_following_the_metadata_gets_medisams_mask(tiny_model, tmp_path, data_dir, integer_boxes):
    """A runtime that follows metadata.json alone, on a real 8-bit image, gets medisam's own masks: the
    recipe lacked the uint8 resize, the floored box corners (LiteMedSAM) and the padding point, and
    such a consumer's masks differed (Dice 0.993 with a box, 0.886 with points alone, bundled model)."""
    import cv2
    from PIL import Image

    from medisam.predict import Predictor

    model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    model.spec = replace(model.spec, integer_boxes=integer_boxes)
    folder = export_onnx(model, tmp_path / "export").folder
    meta = read_export_metadata(folder)
    pre, dec_meta = meta["preprocessing"], meta["decoder"]
    path = sorted((data_dir / "kvasir_seg" / "images").iterdir())[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h0, w0 = rgb.shape[:2]
    size = meta["input_size"]
    scale = size / max(h0, w0)
    h, w = max(int(h0 * scale + 0.5), 1), max(int(w0 * scale + 0.5), 1)
    assert pre["resize"] == "longest" and pre["interpolation"] == "area" and pre["intensity"] == "minmax"
    assert "uint8" in pre["resize_as_uint8"]
    x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)  # resized as uint8
    x = (x - x.min()) / max(x.max() - x.min(), 1e-8)
    x = np.pad(x, ((0, size - h), (0, size - w), (0, 0))).transpose(2, 0, 1)[None].astype(np.float32)
    enc = ort.InferenceSession(str(folder / meta["encoder"]["file"]), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / dec_meta["file"]), providers=["CPUExecutionProvider"])
    embedding = torch.from_numpy(enc.run(None, {"image": x})[0])
    pad = dec_meta["padding_point"]

    def consumer_mask(coords, labels):
        low = _decode_onnx(dec, embedding, coords[None].astype(np.float32), np.asarray([labels]))[0][0, 0]
        logits = cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR)[:h, :w]
        return cv2.resize(logits, (w0, h0), interpolation=cv2.INTER_LINEAR) > 0

    box = np.array([[101.3, 77.6], [301.7, 250.2]]) * scale
    box_mask = consumer_mask(np.floor(box) if dec_meta["floor_box_coords"] else box, [2, 3])
    points = np.array([[200.0, 160.0], [40.0, 30.0]])
    point_mask = consumer_mask(np.vstack([points * scale, [pad["coords"]]]), [1, 0, pad["label"]])
    predictor = Predictor(model).set_image(rgb)
    ours_box = predictor.predict(box=(101.3, 77.6, 301.7, 250.2)).masks[0]
    ours_points = predictor.predict(points=[(200.0, 160.0, 1), (40.0, 30.0, 0)], box_search=False).masks[0]
    for mask in (ours_box, ours_points):  # random weights: masks with pixels on both sides, so a miss shows
        assert 0 < mask.sum() < mask.size
    assert (box_mask != ours_box).sum() <= 2 and (point_mask != ours_points).sum() <= 2
