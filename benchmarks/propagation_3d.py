"""3D propagation from a 3D box: medisam VolumeSession vs the CVPR24 LiteMedSAM 3D procedure.

Both run on the same cases, the same weights (bundled LiteMedSAM), the same 3D boxes
(tight ground-truth boxes per target, voxel indices inclusive, as the CVPR24 challenge
npz ``boxes``) and the same encoder input, so the difference is the propagation procedure:

* reference -- the published CVPR24 ``MedSAM_infer_npz_3D`` re-implemented verbatim: the
  middle slice ``int((z1 - z0) / 2 + z0)`` is prompted with the 3D box's x/y extent
  (scaled by 256 / max(H, W) and truncated to int); every further slice, upwards to z1 and
  downwards to z0 (exclusive of slice 0, a quirk of the original loop bounds), is prompted
  with the box of the previous slice's mask computed at 256 scale (cv2 INTER_AREA resize of
  the mask, padding, +3 px); when the previous mask is empty the original falls back to
  the middle-slice box (``reference``); ``reference-stop`` stops there instead (the
  procedure as often described);
* medisam -- ``VolumeSession.add_box3d(box)`` then ``propagate()`` with
  :class:`medisam.predict.PropagationConfig` (one or several named variants). ``default``
  is tri-planar (``views=3``): the box is propagated along k, j and i (each view seeded on
  its middle slice with the box's in-plane extent, clipped to the box) and the three label
  volumes are fused by 2-of-3 majority; ``single`` (``views=1``) is the previous default,
  propagation along k only; the other variants are ablations of the single-axis rules.
The ``slicebox*`` variants prompt a 2D box instead (the target's tight box on the 3D box's
middle slice, ``VolumeSession.add_box``: no slice range) and rely on the stop rules of
:mod:`medisam.predict.stop_rules` to end the runs: ``slicebox-default`` is the default
(the chain clipped to the user's box, :class:`~medisam.predict.slice_box.SliceBoxRules`),
``slicebox-noclip`` the unclipped chain (the default before), ``slicebox`` the opt-in two
passes, ``slicebox-nostop`` no stop rule and no clip (the behaviour before issue 19).
``--variants single,slicebox-default,slicebox-noclip`` compares them with ``--box3d``.
A variant named ``<variant>+every-box`` decodes and upscales every margin box of a step and keeps
the best (the path before stop 43) instead of the best-of-boxes decoder graph;
``<variant>+whole-grid`` upscales the whole embedding grid (``MEDISAM_UPSCALE_WINDOW=0``, the
path before stop 44) instead of the boxes' window.

Encoder input (shared): the challenge npz images are one uint8 volume per case, mapped
once per volume (MR: 0.5-99.5 percentile window of the whole volume) -- here
``round(volume_to_display(volume))``. Both methods take those slices through the same
preprocessing (resize longest side 256 with INTER_AREA, min-max, pad); the one deviation
from the original code is that the resized slice is not re-rounded to uint8 before min-max
(below 0.5 grey levels). Because the encoder input is identical, embeddings are shared
through one EmbeddingCache per case: "slices" counts the distinct slices each method
needs encoded, the cost that dominates on CPU (for tri-planar variants: the planes of all
three views, each encoded at most once per view); "s" is the time of each method's own
passes (medisam runs first and pays the encoder for its slices; the reference pays only
for slices medisam did not need). With ``--embeddings`` already filled, "s" is decoder and
bookkeeping time only. ``reference-stop`` comes from the same pass as ``reference`` (its
time and slice count are those of that pass, an upper bound for it).

Targets: hippocampus label 1 (anterior) and label 2 (posterior) as separate objects;
BraTS FLAIR (channel 0000) whole tumour (labels > 0) and tumour core (labels 1, 3, 4).

    python benchmarks/propagation_3d.py [--hippo-cases 6] [--brats-cases 4]
        [--variants default,single] [--embeddings DIR] [--prefetch-batch 8] [--threads 1]

``--embeddings DIR`` keeps encoder outputs on disk between runs (development only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from medisam.io import read_image
from medisam.models import load_model
from medisam.models.promptable import PromptableModel
from medisam.predict import EmbeddingCache, Predictor, PropagationConfig, VolumeSession
from medisam.predict.cache import CachedEmbedding, embedding_key
from medisam.predict.slice_box import SliceBoxRules
from medisam.predict.stop_rules import StopRules
from medisam.predict.volume import volume_to_display

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDISAM_DATA", REPO.parent / "shared" / "data"))

#: Named medisam propagation variants (ablation); "default" is PropagationConfig() (tri-planar
#: within 1.5x the single axis's encodings: on thin slices the session axis encodes 1 plane
#: in 4, the other two views sampled in the rest), "single" the session axis only, "tri-full" every plane
#: of the three views (the previous default, ~3x), "tri-uniform" the three views sampled
#: alike within the budget; the rest vary the single-axis rules.
VARIANTS: dict[str, PropagationConfig] = {
    "default": PropagationConfig(),
    "single": PropagationConfig(views=1),
    "stride1": PropagationConfig(encode_stride=1),
    "stride3": PropagationConfig(encode_stride=3),
    "single-stride1": PropagationConfig(views=1, encode_stride=1),
    # stop 42: the single axis at 1 plane in 2 (the default before), and the coarse-first
    # stride refined where the mask agrees with the previous plane's below 0.8 / 0.95 Dice
    "single-fixed": PropagationConfig(views=1, refine_below_dice=None),
    "single-r80": PropagationConfig(views=1, refine_below_dice=0.8),
    "single-r95": PropagationConfig(views=1, refine_below_dice=0.95),
    "tri-full": PropagationConfig(view_budget=None),
    # the session axis at 1 plane in 2 (as the single axis) instead of the default 1 in 4 on thin
    # slices: within the default 1.5x ("tri-s2", stop 38's strict 1.5x), or within 2x (about
    # the default before stop 39, which gave the other views half the session axis's planes)
    "tri-s2": PropagationConfig(view_session_stride=2),
    "tri-s2-2x": PropagationConfig(view_session_stride=2, view_budget=2.0),
    "tri-s3": PropagationConfig(view_session_stride=3),
    "tri-s6": PropagationConfig(view_session_stride=6),
    "tri-uniform": PropagationConfig(view_sampling="uniform"),
    "margin3": PropagationConfig(extra_margins_mm=(), views=1),
    "margin1": PropagationConfig(margin_mm=1.0, extra_margins_mm=(), views=1),
    "margins-wide": PropagationConfig(extra_margins_mm=(0.5, 1.0, 2.0, 6.0), views=1),
    "multimask+seed": PropagationConfig(extra_margins_mm=(), multimask=True, seed_search=2, views=1),
    "mask-prompt": PropagationConfig(mask_prompt=True, views=1),
    "no-reacquire": PropagationConfig(reacquire=False, views=1),
    "noclip": PropagationConfig(clip_to_box=False, views=1),
    "tri-margin3": PropagationConfig(extra_margins_mm=()),
    "slicebox-default": PropagationConfig(views=1),  # what `medisam propagate --slice K --box ...` does
    "slicebox-fixed": PropagationConfig(views=1, refine_below_dice=None),  # the same at 1 plane in 2 (stop 41)
    "slicebox": PropagationConfig(views=1, slice_box=SliceBoxRules(enabled=True)),  # the two-pass rule (opt-in)
    "slicebox-chain": PropagationConfig(views=1, slice_box=SliceBoxRules(enabled=False)),
    "slicebox-noclip": PropagationConfig(views=1, slice_box=SliceBoxRules(clip=False)),  # the default before
    "slicebox-nostop": PropagationConfig(views=1, stop_rules=StopRules.off(),
                                         slice_box=SliceBoxRules(enabled=False, clip=False)),
    # stop 73: the grace in slices alone (5), not bounded by the object's size in mm (the default before)
    "slicebox-grace5": PropagationConfig(views=1, stop_rules=StopRules(size_grace=float("inf"))),
    # the default before: the clip to the user's box itself, regrowth 1.5x
    "slicebox-before": PropagationConfig(views=1, slice_box=SliceBoxRules(clip_margin=0.0),
                                         stop_rules=StopRules(max_min_growth=1.5)),
    # the clip to the user's box grown by a fraction of its sides (issue 19: tumour core widens off its middle slice)
    **{f"slicebox-m{pct}": PropagationConfig(views=1, slice_box=SliceBoxRules(clip_margin=pct / 100))
       for pct in (0, 10, 25, 50)},
}
#: Variants prompted with the tight 2D box of the target on the 3D box's middle slice
#: (``VolumeSession.add_box``: no slice range, no x/y clip; the stop rules end the runs).
SLICE_BOX_VARIANTS = {v for v in VARIANTS if v.startswith("slicebox")}


# --------------------------------------------------------------------- cases
@dataclass
class Case:
    dataset: str
    name: str
    image: object  # MedicalImage (raw)
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (Z, Y, X) bool


def msd_cases(folder: str, dataset: str, n: int, targets, skip: int = 0,
              keep: set[str] | None = None) -> list[Case]:
    """Cases ``skip..n-1`` (by sorted id) of an MSD-layout set (imagesTr/*_0000.nii.gz,
    labelsTr/*.nii.gz), only those named in ``keep`` when given (only these are read);
    ``targets(labels)`` maps the label volume to ``{target: (Z, Y, X) bool}``."""
    root = DATA / folder
    cases = []
    for path in sorted((root / "imagesTr").glob("*_0000.nii.gz"))[skip:n]:
        name = path.name.replace("_0000.nii.gz", "")
        if keep is not None and name not in keep:
            continue
        labels = read_image(root / "labelsTr" / f"{name}.nii.gz").array
        cases.append(Case(dataset, name, read_image(path), targets(labels)))
    return cases


def hippocampus_cases(n: int, skip: int = 0, keep: set[str] | None = None) -> list[Case]:
    """Hippocampus label 1 (anterior) and label 2 (posterior) as separate objects."""
    return msd_cases("msd_task04_hippocampus", "hippocampus", n,
                     lambda labels: {"label1": labels == 1, "label2": labels == 2}, skip, keep)


def brats_cases(n: int, skip: int = 0, keep: set[str] | None = None) -> list[Case]:
    """BraTS FLAIR: whole tumour (labels > 0) and tumour core (labels 1, 3, 4)."""
    return msd_cases("brats2015_deepmedic", "brats-flair", n,
                     lambda labels: {"whole": labels > 0, "core": np.isin(labels, (1, 3, 4))}, skip, keep)


def tight_box3d(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """``(x0, y0, z0, x1, y1, z1)`` inclusive voxel indices of a ``(Z, Y, X)`` mask."""
    zs, ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(zs.min()), int(xs.max()), int(ys.max()), int(zs.max())


def middle_slice_box(mask: np.ndarray, box3d) -> tuple[int, tuple[int, int, int, int]]:
    """The 3D box's middle slice (as the CVPR24 code picks it) and the tight 2D box (pixel
    edges) of the mask there: the prompt of the slice-box variants."""
    z = int((box3d[5] - box3d[2]) / 2 + box3d[2])
    ys, xs = np.nonzero(mask[z])
    return z, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


# ----------------------------------------------------------------- reference
def object_volume(session: VolumeSession, obj_id: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(Z, Y, X)`` bool mask of one object from a propagated session's slice results."""
    pred = np.zeros(shape, dtype=bool)
    for z, r in session.results(obj_id).items():
        pred[z] |= r.mask
    return pred


def _resize_longest_side(image: np.ndarray, target: int = 256) -> np.ndarray:
    h, w = image.shape[:2]
    scale = target * 1.0 / max(h, w)
    return cv2.resize(image, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_AREA)


def _pad(image: np.ndarray, target: int = 256) -> np.ndarray:
    return np.pad(image, ((0, target - image.shape[0]), (0, target - image.shape[1])))


def _bbox256(mask256: np.ndarray, shift: int = 3) -> np.ndarray:
    ys, xs = np.where(mask256 > 0)
    h, w = mask256.shape
    return np.array([max(0, xs.min() - shift), max(0, ys.min() - shift),
                     min(w, xs.max() + shift), min(h, ys.max() + shift)])


def _box_to_256(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    ratio = 256 / max(hw)
    return np.array([int(v * ratio) for v in box])


def reference_3d(predictor: Predictor, vol8: np.ndarray, box3d) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """The CVPR24 ``MedSAM_infer_npz_3D`` loop for one 3D box.

    Returns (reference mask, reference-stop mask, slices visited). The stop variant is the
    same loop ended at the first slice whose previous mask is empty, i.e. the reference with
    every slice after its first empty one (in each direction) cleared -- one pass gives both.
    """
    x_min, y_min, z_min, x_max, y_max, z_max = box3d
    mid_box = np.array([x_min, y_min, x_max, y_max])
    z_middle = int((z_max - z_min) / 2 + z_min)
    d, h, w = vol8.shape
    seg = np.zeros(vol8.shape, dtype=np.uint8)
    stop = np.zeros(vol8.shape, dtype=np.uint8)
    visited: set[int] = set()

    def infer(z: int, prev: np.ndarray | None) -> None:
        if prev is None:
            box256 = _box_to_256(mid_box, (h, w))
        else:
            pre256 = _resize_longest_side(prev)
            box256 = _bbox256(_pad(pre256)) if pre256.max() > 0 else _box_to_256(mid_box, (h, w))
        predictor.set_display_image(_display(vol8, z))
        visited.add(z)
        emb = predictor.get_image_embedding()
        boxes = torch.as_tensor(box256[None], dtype=torch.float32, device=predictor.model.device)
        out = predictor.model.decode(emb, boxes=boxes, multimask=False)
        seg[z][predictor.logits_to_masks(out.low_res_logits[:, 0])[0]] = 1

    for direction in (range(z_middle, min(z_max + 1, d)), range(z_middle - 1, max(0, z_min - 1), -1)):
        alive = True
        for z in direction:
            prev = None if z == z_middle else seg[z - 1 if direction.step > 0 else z + 1]
            if prev is not None and _resize_longest_side(prev).max() == 0:
                alive = False  # reference-stop ends here; the reference re-prompts the middle box
            infer(z, prev)
            if alive:
                stop[z] = seg[z]
    return seg.astype(bool), stop.astype(bool), visited


def _display(vol8: np.ndarray, z: int) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(vol8[z][..., None], 3, axis=-1), dtype=np.float32)


# ----------------------------------------------------------- encoder sharing
class DiskBackedCache(EmbeddingCache):
    """An EmbeddingCache that also keeps embeddings in DIR (float16), for repeated dev runs."""

    def __init__(self, directory: Path | None, max_bytes: int):
        super().__init__(max_bytes)
        self.directory = directory
        self.encoded = 0

    def get(self, key: str):
        item = super().get(key)
        if item is None and self.directory is not None:
            path = self.directory / f"{key}.pt"
            if path.exists():
                emb, t = torch.load(path, weights_only=False)
                item = CachedEmbedding(emb.float(), t)
                super().put(key, item)
        return item

    def put(self, key: str, item) -> None:
        self.encoded += 1
        super().put(key, item)
        if self.directory is not None:
            torch.save((item.embedding.half(), item.transform), self.directory / f"{key}.pt")


def prefetch(model, cache: EmbeddingCache, vol8: np.ndarray, slices: list[int], batch: int) -> None:
    """Encode the given slices (not yet cached) in batches: identical to one-by-one encoding."""
    todo = []
    for z in slices:
        key = embedding_key(_display(vol8, z), model.cache_signature)
        if cache.get(key) is None:
            todo.append((z, key))
    for i in range(0, len(todo), batch):
        chunk = todo[i:i + batch]
        tensors, transforms = zip(*(model.preprocess(_display(vol8, z)) for z, _ in chunk))
        emb = model.encode(torch.cat(tensors))
        for j, (z, key) in enumerate(chunk):
            cache.put(key, CachedEmbedding(emb[j:j + 1].clone(), transforms[j]))


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hippo-cases", type=int, default=6)
    ap.add_argument("--skip-hippo", type=int, default=0, help="skip the first N hippocampus cases")
    ap.add_argument("--brats-cases", type=int, default=4)
    ap.add_argument("--skip-brats", type=int, default=0, help="skip the first N BraTS cases")
    ap.add_argument("--variants", default="default", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--embeddings", type=Path, default=None, help="dev: keep embeddings in DIR")
    ap.add_argument("--prefetch-batch", type=int, default=0,
                    help="encode each target's slice range up front in batches of N (0 = lazily)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--backend", default="auto", help="inference backend (auto, torch, onnx, openvino); "
                    "--embeddings caches are per backend and precision")
    ap.add_argument("--precision", default=None,
                    help="with an explicit --backend: its precision (fp32, bf16, int8); default: the backend's")
    ap.add_argument("--encode-only", action="store_true", help="dev: only fill --embeddings")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the CVPR24 reference (it encodes every plane in the boxes' ranges)")
    ap.add_argument("--only", default="", help="comma list of case ids to keep (e.g. hippocampus_044)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        name, _, path = v.partition("+")
        if name not in VARIANTS or path not in ("", "every-box", "whole-grid"):
            ap.error(f"unknown variant {v!r}")
    if args.embeddings is not None:
        args.embeddings.mkdir(parents=True, exist_ok=True)
    precision = {} if args.precision is None else {"precision": args.precision}
    model = load_model("litemedsam", device="cpu", backend=args.backend, threads=args.threads or None, **precision)
    print(f"# model: backend {model.backend}, precision {model.precision}", flush=True)
    # "<variant>+every-box": a propagation step decodes and upscales every margin box and keeps the
    # best (PromptableModel.decode_best, the path before stop 43) instead of the best-of-boxes graph
    decode_best = {"": model.decode_best, "every-box": types.MethodType(PromptableModel.decode_best, model),
                   "whole-grid": model.decode_best}
    keep = {c.strip() for c in args.only.split(",") if c.strip()} or None
    cases = (hippocampus_cases(args.hippo_cases, args.skip_hippo, keep)
             + brats_cases(args.brats_cases, args.skip_brats, keep))
    if not cases:
        print(f"no data under {DATA}", file=sys.stderr)
        return 1
    references = [] if args.no_reference else ["reference", "reference-stop"]
    methods = references + [f"medisam:{v}" for v in variants]
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    cost: dict[str, dict[str, list[float]]] = {}  # dataset -> "method:s"/"method:slices" -> per case
    t_all = time.perf_counter()
    for case in cases:
        vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)
        image8 = case.image.with_array(vol8)
        cache = DiskBackedCache(args.embeddings, max_bytes=(sum(vol8.shape) + 4) * (4 << 20))  # 3 views
        predictor = Predictor(model, cache=cache)
        boxes = {t: tight_box3d(m) for t, m in case.targets.items() if m.any()}
        if args.prefetch_batch:
            zs = sorted({z for b in boxes.values() for z in range(b[2], b[5] + 1)})
            prefetch(model, cache, vol8, zs, args.prefetch_batch)
            print(f"# {case.name}: {len(zs)} slices in range", flush=True)
        if args.encode_only:
            continue
        c = cost.setdefault(case.dataset, {})
        for v in variants:
            t0 = time.perf_counter()
            name, _, path = v.partition("+")
            model.decode_best = decode_best[path]
            # "+whole-grid": every decoder call upscales the whole grid (the path before stop 44)
            os.environ["MEDISAM_UPSCALE_WINDOW"] = "0" if path == "whole-grid" else "1"
            session = VolumeSession(model, image8, predictor=predictor, config=VARIANTS[name])
            for i, (target, box) in enumerate(boxes.items(), start=1):
                if name in SLICE_BOX_VARIANTS:
                    session.add_box(*middle_slice_box(case.targets[target], box), obj_id=i)
                else:
                    session.add_box3d(box, obj_id=i)
            session.propagate(progress=False)
            for i, target in enumerate(boxes, start=1):
                rows.setdefault((case.dataset, target), {}).setdefault(f"medisam:{v}", []).append(
                    dice(object_volume(session, i, vol8.shape), case.targets[target]))
            c.setdefault(f"medisam:{v}:s", []).append(time.perf_counter() - t0)
            c.setdefault(f"medisam:{v}:slices", []).append(len(session.visited_planes))
            c.setdefault(f"medisam:{v}:own", []).append(len(session.encoder.own))  # the session axis's
        if args.no_reference:
            print(f"# {case.dataset} {case.name}: " + ", ".join(
                f"{t}: " + " / ".join(f"{v} {rows[(case.dataset, t)][f'medisam:{v}'][-1]:.3f}" for v in variants)
                for t in boxes), flush=True)
            continue
        t0 = time.perf_counter()
        visited: set[int] = set()
        for target, box in boxes.items():
            ref, ref_stop, vis = reference_3d(predictor, vol8, box)
            visited |= vis
            row = rows.setdefault((case.dataset, target), {})
            row.setdefault("reference", []).append(dice(ref, case.targets[target]))
            row.setdefault("reference-stop", []).append(dice(ref_stop, case.targets[target]))
        for method in ("reference", "reference-stop"):  # one pass computes both
            c.setdefault(f"{method}:s", []).append(time.perf_counter() - t0)
            c.setdefault(f"{method}:slices", []).append(len(visited))
        print(f"# {case.dataset} {case.name}: " + ", ".join(
            f"{t}: ref {rows[(case.dataset, t)]['reference'][-1]:.3f} / "
            + " / ".join(f"{v} {rows[(case.dataset, t)][f'medisam:{v}'][-1]:.3f}" for v in variants)
            for t in boxes), flush=True)

    print()
    head = (["dataset", "target", "n"] + (["reference", "ref-stop"] if references else [])
            + [f"medisam:{v}" for v in variants] + ["gain" if references else f"each - {variants[0]}"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    best = f"medisam:{variants[0]}"
    for (dataset, target), res in rows.items():
        vals = [float(np.mean(res[m])) for m in methods]
        if references:
            gain = f"{float(np.mean(res[best])) - vals[0]:+.4f}"
        else:  # paired: each variant against the first, mean difference and cases worse / better
            gain = ", ".join(f"{float(np.mean(d)):+.4f} ({int((d < 0).sum())}/{int((d > 0).sum())})" for d in
                             (np.subtract(res[m], res[best]) for m in methods[1:]))
        print(f"| {dataset} | {target} | {len(res[best])} | " + " | ".join(f"{x:.4f}" for x in vals) + f" | {gain} |")
    print()
    print("| dataset | method | cases | seconds (sum) | slices encoded (sum) | session-axis planes embedded (sum) |")
    print("|---|---|---|---|---|---|")
    for dataset, c in cost.items():
        for m in methods:
            own = int(sum(c[m + ':own'])) if m + ':own' in c else "-"
            print(f"| {dataset} | {m} | {len(c[m + ':s'])} | {sum(c[m + ':s']):.1f} | {int(sum(c[m + ':slices']))} "
                  f"| {own} |")
    if "single" in variants and "slicebox-default" in variants:  # issue 19: slice box >= box3d - 0.05
        print("\n| dataset | target | n | box3d single | slice box (default) | single - 0.05 | margin |")
        print("|---|---|---|---|---|---|---|")
        for (dataset, target), res in rows.items():
            one, box = float(np.mean(res["medisam:single"])), float(np.mean(res["medisam:slicebox-default"]))
            print(f"| {dataset} | {target} | {len(res['medisam:single'])} | {one:.3f} | {box:.3f} | {one - 0.05:.3f} "
                  f"| {box - one + 0.05:+.3f} |")
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s; gain = {best} - reference "
          "(CVPR24 code, fallback to the middle box on empty slices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
