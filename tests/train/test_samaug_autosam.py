"""SAMAug priors and files; AutoSAM train/predict on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medisam.cli import main
from medisam.train import autosam
from medisam.train.samaug import SamAugPriors, augmented_image


def test_augmented_image_channels():
    display = np.zeros((4, 5, 3), np.float32)
    display[..., 0], display[..., 1], display[..., 2] = 30, 60, 90  # grey = 60
    seg = np.zeros((4, 5), np.float32)
    seg[1, 1] = 0.5
    boundary = np.zeros((4, 5), bool)
    boundary[2, 3] = True
    out = augmented_image(display, SamAugPriors(seg, boundary, 1))
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert (out[..., 0] == 60).all()
    assert out[1, 1, 1] == 128 and out[..., 1].sum() == 128
    assert out[2, 3, 2] == 255 and out[..., 2].sum() == 255


def test_samaug_cli_writes_three_channel_pngs(tiny_dataset, tmp_path, monkeypatch, capsys):
    import medisam.prompting.automatic as automatic

    def one_mask(predictor, config):  # the tiny random model finds nothing stable; give it one mask
        h, w = predictor.image_size
        m = np.zeros((1, h, w), bool)
        m[0, 10:30, 10:30] = True
        return automatic.AutoMasks.from_dense(m, np.array([0.9], np.float32), np.array([0.8], np.float32),
                                   np.zeros((1, 2), np.float32))

    monkeypatch.setattr(automatic, "generate_masks", one_mask)
    inputs = [str(tiny_dataset / "images" / f"case{i}.png") for i in range(2)]
    out = tmp_path / "aug"
    args = ["samaug", *inputs, "-o", str(out), "--model", "litemedsam-tiny", "--device", "cpu",
            "--points-per-side", "4", "--grid", "points"]
    assert main(args) == 0
    png = np.asarray(Image.open(out / "case0.png"))
    grey = np.asarray(Image.open(inputs[0]))
    assert png.shape == (64, 80, 3)
    assert np.array_equal(png[..., 0], grey)
    assert set(np.unique(png[..., 1])) == {0, 204}  # stability 0.8 inside the mask
    assert png[10, 10, 2] == 255 and png[20, 20, 2] == 0 and png[50, 60, 2] == 0
    assert main(args) == 2 and "exists" in capsys.readouterr().err


def test_samaug_runs_the_real_generator_on_tiny_model(tiny_dataset, tmp_path):
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.train.samaug import compute_priors

    display = np.repeat(np.asarray(Image.open(tiny_dataset / "images" / "case0.png"))[..., None], 3, -1)
    priors = compute_priors(Predictor(load_model("litemedsam-tiny", device="cpu")), display.astype(np.float32),
                            points_per_side=2, pred_iou_thresh=0.0, stability_thresh=0.0)
    assert priors.segmentation.shape == (64, 80) and 0 <= priors.segmentation.min() <= priors.segmentation.max() <= 1
    assert priors.boundary.dtype == bool


@pytest.mark.parametrize("thresholds,named", [({"pred_iou_thresh": -1.0}, "pred_iou_thresh -1"),
                                               ({"stability_thresh": -0.5}, "stability_thresh -0.5")])
def test_samaug_refuses_negative_thresholds_in_the_library(tmp_path, thresholds, named):
    """The scores are 0..1 and -1 kept every mask, as 0 does: refused by samaug_files / compute_priors (it was
    ``medisam samaug``'s check only), before any image is read or written; the predictor is never used."""
    from medisam.errors import InputError
    from medisam.train.samaug import compute_priors, samaug_files

    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    expected = rf"^{named}: pred_iou_thresh and stability_thresh are scores from 0 to 1; give a threshold from 0"
    with pytest.raises(InputError, match=expected):
        samaug_files([image], tmp_path / "aug", None, progress=False, **thresholds)
    assert not (tmp_path / "aug").exists()
    with pytest.raises(InputError, match=expected):
        compute_priors(None, np.zeros((8, 8, 3), np.float32), **thresholds)


def test_prompt_generator_shapes_and_gradients():
    from medisam.models import load_model

    gen = autosam.PromptGenerator(256, 16, num_classes=2, num_tokens=3)
    emb = torch.randn(2, 256, 64, 64)
    sparse, dense = gen(emb)
    assert sparse.shape == (2, 2, 3, 256) and dense.shape == (2, 2, 256, 64, 64)
    net = load_model("litemedsam-tiny", device="cpu").net.requires_grad_(False)  # frozen, as in training
    outs = autosam.decode(net, gen, emb)
    assert outs[0][0].shape == (2, 1, 256, 256)
    outs[0][0].sum().backward()
    assert all(p.grad is not None for p in gen.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_autosam_train_and_predict_cli(tiny_dataset, tmp_path):
    ckpt = tmp_path / "auto.pt"
    assert main(["autosam", "train", str(tiny_dataset), "-o", str(ckpt), "--model", "litemedsam-tiny",
                 "--epochs", "1", "--batch-size", "3", "--multiclass", "--device", "cpu", "--quiet"]) == 0
    saved = torch.load(ckpt, weights_only=True)
    assert saved["autosam"]["classes"] == [1, 2] and saved["autosam"]["base_model"] == "litemedsam-tiny"
    out = tmp_path / "m.png"
    assert main(["autosam", "predict", str(ckpt), str(tiny_dataset / "images" / "case1.png"), "-o", str(out),
                 "--device", "cpu"]) == 0
    mask = np.asarray(Image.open(out))
    assert mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 1, 2}
    assert main(["autosam", "predict", str(tmp_path / "none.pt"), str(tiny_dataset / "images" / "case1.png"),
                 "-o", str(tmp_path / "n.png"), "--device", "cpu"]) == 2


def test_samaug_priors_of_the_bundled_model_are_not_empty_by_default(real_model, data_dir):
    """With its defaults, SAMAug on LiteMedSAM keeps masks (its box grid) and the prior covers
    part of the image: before, SAM's point-grid filters kept none and the priors were all zero."""
    from medisam.bench.datasets import discover_cases
    from medisam.io import to_display
    from medisam.predict import Predictor
    from medisam.train.samaug import compute_priors

    case = discover_cases(data_dir / "ph2_dermoscopy")[0].load()
    display = to_display(case.image.array, case.image.modality)
    priors = compute_priors(Predictor(real_model), display, points_per_side=8)
    assert priors.n_masks > 0
    assert 0.01 < float((priors.segmentation > 0).mean()) and priors.boundary.any()


def test_samaug_finds_a_corrupt_input_before_writing_any_output(tiny_dataset, tmp_path, capsys):
    good = tiny_dataset / "images" / "case0.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:60])
    out = tmp_path / "aug"
    assert main(["samaug", str(good), str(corrupt), "-o", str(out), "--model", "litemedsam-tiny",
                 "--device", "cpu"]) == 2
    assert "corrupt.png" in capsys.readouterr().err
    assert not (out / "case0.png").exists()


def test_autosam_predicts_on_the_base_weights_it_was_trained_on(tiny_dataset, tmp_path, capsys):
    """An AutoSAM file did not record its base weights: predict ran on the default ones, or on any
    --checkpoint, silently. It now loads the weights it was trained on, and refuses others."""
    from medisam.models import load_model

    bases = []
    for seed in (1, 2):  # two different sets of base weights, saved as a user's fine-tuned files
        torch.manual_seed(seed)
        net = load_model("litemedsam-tiny", device="cpu", backend="torch").net
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.02)
        bases.append(tmp_path / f"base{seed}.pth")
        torch.save(net.state_dict(), bases[-1])
    ckpt = tmp_path / "auto.pt"
    assert main(["autosam", "train", str(tiny_dataset), "-o", str(ckpt), "--model", "litemedsam-tiny",
                 "--checkpoint", str(bases[0]), "--epochs", "1", "--batch-size", "3", "--device", "cpu",
                 "--quiet"]) == 0
    image = str(tiny_dataset / "images" / "case1.png")
    loaded = autosam.AutoSam.load(ckpt, device="cpu")  # no --checkpoint: the base it was trained on
    assert loaded.model.checkpoint_sha256 == load_model("litemedsam-tiny", checkpoint=bases[0], device="cpu",
                                                        backend="torch").checkpoint_sha256
    capsys.readouterr()
    assert main(["autosam", "predict", str(ckpt), image, "-o", str(tmp_path / "m.png"), "--checkpoint",
                 str(bases[1]), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"was trained on {bases[0].resolve()}, not on {bases[1]}" in err and "--checkpoint" in err
    assert not (tmp_path / "m.png").exists()
