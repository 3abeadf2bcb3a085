"""Slice-to-slice propagation rules for SAM/LiteMedSAM (no model state here).

Each next slice is prompted from the previous slice's result: a box around the previous
mask grown by a margin (given in mm, converted per in-plane axis so anisotropic pixels
get the same physical margin), optionally the previous low-res logits as a mask prompt and
a positive click at the interior-most point of the previous mask. Propagation stops when
the object vanishes (empty mask, area collapse) or the predicted IoU drops too low.

A 3D box is also propagated along the other two axes (``views=3``, the default): each view
is seeded on its own middle slice with the box's in-plane extent and clipped to the box,
and the three label volumes are fused by majority (:func:`fuse_views`). A 2D model sees
each slice in isolation, so its errors differ between orientations; a voxel kept by two of
three views is rarely a leak along one of them, and a slice lost along one axis is
recovered by the other two.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from medisam.errors import InputError
from medisam.metrics_basic import dice
from medisam.models.upscale_window import EDGE_LOGIT
from medisam.predict.slice_box import SliceBoxRules
from medisam.predict.stop_rules import StopRules
from medisam.prompts import Box


#: The widest plane distance (mm) at which ``encode_stride=None`` interpolates every other
#: plane's embedding (2 mm gaps between encoded planes; benchmarks/propagation_3d.py
#: ``--variants default,stride1``).
STRIDE_MAX_PLANE_MM = 1.25


def auto_stride(plane_mm: float) -> int:
    """The encode stride of planes ``plane_mm`` apart when ``encode_stride`` is None."""
    return 2 if 0 < plane_mm <= STRIDE_MAX_PLANE_MM else 1


#: A secondary view is skipped when its planes cross slices more than this many times thicker
#: than their pixels: stretched to square pixels, such a plane is mostly interpolation
#: (docs/speed.md, stop 40). Three views against the session axis alone: a 5 mm lung CT's
#: whole lung 0.861 against 0.949; BraTS resampled to 5 mm slices, a draw (whole tumour 0.862
#: against 0.873, core 0.695 against 0.681); at 3 mm the three views win (0.882 / 0.689
#: against 0.867 / 0.656), as on the 1 mm sets.
MAX_VIEW_ANISOTROPY = 4.0


@dataclass(frozen=True)
class PropagationConfig:
    """Tuning of slice-to-slice propagation (defaults chosen by benchmarks/propagation_3d.py).

    Attributes:
        margin_mm: growth of the previous mask's box on each side, in mm.
        extra_margins_mm: further margins to try on every slice; the box whose mask has the
            highest predicted IoU wins (decoder passes only, no extra encoding).
        min_margin_px: lower bound of that growth in pixels (for coarse pixels).
        mask_prompt: feed the previous slice's low-res logits as the mask prompt.
        point_prompt: add a positive click at the previous mask's interior-most point.
        min_score: stop when the predicted IoU falls below this.
        min_area_ratio: stop when the area falls below this fraction of the previous area.
        min_area_px: stop when the mask has fewer pixels than this.
        clip_to_box: clip propagated boxes and masks to the x/y extent of a 3D box prompt.
        mask_threshold: logit threshold of propagated masks (SAM uses 0; a negative value
            grows masks, which counters the shrinking of box-chained small objects), at least
            -2 (:data:`medisam.models.upscale_window.EDGE_LOGIT`).
        multimask: decode 3 candidate masks per slice and keep the one that overlaps the
            previous slice's mask most (resolves SAM's ambiguity towards temporal consistency).
        seed_search: for a 3D box, try the x/y box on this many slices either side of the
            middle slice and seed from the one with the highest predicted IoU (slices in
            the range only, so no extra encoding).
        reacquire: inside a 3D box's slice range the object is present on every slice (the
            tight box is its extent), so when propagation loses it there, the slice is
            re-prompted with the box's x/y extent (as the CVPR24 procedure does) and
            propagation carries on from the last non-empty mask instead of stopping.
        encode_batch: slices encoded together ahead of the propagation front (OpenVINO runs
            them on single-thread streams side by side; same embeddings, so the same masks).
            A 3D box's runs never stop before their end; a run that stop rules end encodes at
            most ``encode_batch - 1`` slices past it. Default 1: on a quiet 2-core CPU pairs
            saved 3-4 % of the encoder alone and nothing measurable on whole propagations
            (``benchmarks/encode_batch.py``).
        encode_stride: propagation encodes every ``encode_stride``-th plane of a view and
            gives the planes between an embedding interpolated linearly from the two encoded
            ones around them (the decoder still runs on every plane, with its own box); the
            slices the user prompts are always encoded. None (default): 2 where the planes
            are at most :data:`STRIDE_MAX_PLANE_MM` apart (thin-slice MR/CT, where neighbouring
            planes look alike), else 1; 1 = encode every plane.
        refine_below_dice: with ``encode_stride=None`` where it interpolates, a propagated plane
            first takes the embedding interpolated between planes twice the stride apart (1 in
            4); where the mask decoded from it agrees with the previous plane's mask below this
            Dice (the object changes fast there, or the interpolation failed), it is decoded
            again at the stride (1 in 2, encoding the plane between), and so are the rest of its
            interval in that run. Large, slowly changing objects cost fewer encodings (BraTS
            tumours 0.79x, the 100-slice brain 0.77x); small, fast-changing ones what the
            stride costs (the hippocampus 1.01x), at equal accuracy (docs/speed.md, stops 42-43).
            None: the stride alone. An explicit ``encode_stride`` is never coarsened.
        views: for a 3D box, the number of slicing axes it is propagated along and fused:
            3 = tri-planar (the session's axis and the two others, majority of the three
            label volumes, see :func:`fuse_views`); 1 = the session's axis only (the
            single-axis behaviour). Prompts on single slices always propagate along the
            session's axis only. Each view encodes the planes of the box's range along
            its axis (each at most once).
        view_budget: with ``views=3``, the most a 3D box may cost, in encodings, as a multiple
            of the box's single-axis propagation; views are sampled to fit and thin views
            skipped (see :func:`medisam.predict.view_plan.plan_views`). None: every plane of
            every view (about three times the single-axis cost).
        view_session_stride: with ``views=3``, the encode stride of the session axis's view
            within a 3D box plan. None (default): twice the single-axis stride where that
            interpolates (1 plane in 4 on slices at most :data:`STRIDE_MAX_PLANE_MM` apart),
            which leaves the other views about half the session axis's planes within 1.5x
            (a third view's vote is worth more than the session axis's density: measured in
            docs/speed.md, stop 39); the single axis's stride elsewhere, or ``encode_stride``
            when that is set.
        view_sampling: how views are sampled to fit the budget: ``"secondary"`` (every
            plane of the session axis, the other two on planes at one distance in mm;
            measured best, see benchmarks/propagation_3d.py) or ``"uniform"`` (all three
            views sampled alike).
        view_max_anisotropy: with ``views=3``, the other two views are skipped (the box is
            propagated along the session axis only) where their planes cross slices more than
            this many times thicker than their pixels (5 mm CT slices of 0.7 mm pixels: 7x);
            see :data:`MAX_VIEW_ANISOTROPY`.
        view_min_agreement: with ``views=3``, a view other than the session axis's takes part
            in the vote only when its mask agrees with the session axis's view at least this
            much (Dice inside the box, :func:`views_in_vote`). A 2D model can fail on a whole
            view (planes it never saw: a whole lung's coronal reformats of a thin-slice CT,
            Dice 0.06 where the session axis had 0.96), and two such views outvote the good
            one. Views that merely differ agree far above it (0.23 at the least over 120 views
            of hippocampus and BraTS boxes). Applies only where the session axis's view is
            confident (``view_trusted_score``). 0 = every view votes.
        view_trusted_score: the mean predicted IoU of the session axis's view over its slices
            from which ``view_min_agreement`` applies. Where the session axis itself is unsure,
            two other views that agree with each other are more often right: hippocampus_172
            (session 0.64) lost 0.461 -> 0.180 without this condition; the failed lung's session
            axis scored 0.92.
        stop_rules: where a run from a prompt on one slice (no 3D box) ends: shape change,
            growth against the seed, ... (:class:`~medisam.predict.stop_rules.StopRules`;
            ``StopRules.off()`` propagates until a mask is empty; ``StopRules(size_grace=float("inf"))``
            keeps the grace in slices whatever the slice thickness, the default before stop 73).
        slice_box: how a box on one slice is propagated (:class:`~medisam.predict.slice_box.SliceBoxRules`):
            by default the chain clipped to the user's box and ended by ``stop_rules``; opt-in,
            two passes (the stopped chain's 3D box segmented like a 3D box).
    """

    margin_mm: float = 3.0
    extra_margins_mm: tuple[float, ...] = (1.0, 6.0)
    min_margin_px: float = 1.0
    mask_prompt: bool = False
    point_prompt: bool = False
    min_score: float = 0.0
    min_area_ratio: float = 0.0
    min_area_px: int = 1
    clip_to_box: bool = True
    mask_threshold: float = 0.0
    multimask: bool = False
    seed_search: int = 0
    reacquire: bool = True
    encode_batch: int = 1
    encode_stride: int | None = None
    refine_below_dice: float | None = 0.9
    views: int = 3
    view_budget: float | None = 1.5
    view_session_stride: int | None = None
    view_sampling: str = "secondary"
    view_max_anisotropy: float = MAX_VIEW_ANISOTROPY
    view_min_agreement: float = 0.15
    view_trusted_score: float = 0.85
    stop_rules: StopRules = StopRules()
    slice_box: SliceBoxRules = SliceBoxRules()

    def stride_for(self, plane_mm: float) -> int:
        """The encode stride of a view whose planes are ``plane_mm`` apart (``encode_stride``, else auto)."""
        return self.encode_stride if self.encode_stride is not None else auto_stride(plane_mm)

    def coarse_stride(self, stride: int) -> int:
        """The stride a propagation at ``stride`` tries first (see ``refine_below_dice``)."""
        adaptive = self.encode_stride is None and self.refine_below_dice is not None
        return 2 * stride if adaptive and stride > 1 else stride

    def view_session_stride_for(self, plane_mm: float) -> int:
        """The session axis's encode stride in a tri-planar plan, its planes ``plane_mm`` apart."""
        if self.view_session_stride is not None:
            return self.view_session_stride
        single = self.stride_for(plane_mm)
        return 2 * single if self.encode_stride is None and single > 1 else single

    def __post_init__(self) -> None:
        if not isinstance(self.encode_batch, int) or self.encode_batch < 1:
            raise InputError(f"encode_batch must be a whole number >= 1, got {self.encode_batch!r}")
        if self.encode_stride is not None and (not isinstance(self.encode_stride, int) or self.encode_stride < 1):
            raise InputError(f"encode_stride must be a whole number >= 1 (or None: auto), got {self.encode_stride!r}")
        if self.view_session_stride is not None and (not isinstance(self.view_session_stride, int)
                                                     or self.view_session_stride < 1):
            raise InputError("view_session_stride must be a whole number >= 1 (or None: as the single axis), "
                             f"got {self.view_session_stride!r}")
        if self.refine_below_dice is not None and not 0.0 <= self.refine_below_dice <= 1.0:
            raise InputError(f"refine_below_dice must be a Dice in [0, 1] (or None), got {self.refine_below_dice!r}")
        if self.views not in (1, 3):
            raise InputError(f"views must be 1 (session axis only) or 3 (tri-planar), got {self.views}")
        if self.view_budget is not None and self.view_budget < 1.0:
            raise InputError(f"view_budget must be >= 1 (times the single-axis encodings), got {self.view_budget}")
        if self.view_sampling not in ("uniform", "secondary"):
            raise InputError(f"view_sampling must be 'uniform' or 'secondary', got {self.view_sampling!r}")
        if not self.view_max_anisotropy >= 1.0:
            raise InputError(f"view_max_anisotropy must be >= 1 (slice / pixel size), got {self.view_max_anisotropy!r}")
        if not 0.0 <= self.view_min_agreement <= 1.0:
            raise InputError(f"view_min_agreement must be a Dice in [0, 1], got {self.view_min_agreement!r}")
        if not 0.0 <= self.view_trusted_score <= 1.0:
            raise InputError(f"view_trusted_score must be an IoU in [0, 1], got {self.view_trusted_score!r}")
        if not EDGE_LOGIT <= self.mask_threshold <= 20.0:
            # the fast decoders upscale a window of the grid and go to the whole grid where a mask's
            # logits pass EDGE_LOGIT on its edge: a lower threshold could cut a mask there
            raise InputError(f"mask_threshold must be a logit in [{EDGE_LOGIT:g}, 20], got {self.mask_threshold!r}")


def clip_to(mask: np.ndarray, box: Box | None) -> np.ndarray:
    """Zero a plane mask, or a stack of them ``(..., H, W)``, outside ``box`` (pixel edges;
    None: the mask as it is)."""
    if box is None:
        return mask
    out = np.zeros_like(mask)
    y0, x0 = max(0, int(np.floor(box.y0))), max(0, int(np.floor(box.x0)))
    y1, x1 = int(np.ceil(box.y1)), int(np.ceil(box.x1))
    out[..., y0:y1, x0:x1] = mask[..., y0:y1, x0:x1]
    return out


def grown_box(box: Box, margin_xy: tuple[float, float], plane_hw: tuple[int, int],
              shift_xy: tuple[float, float] = (0.0, 0.0)) -> Box:
    """``box`` moved by ``shift_xy`` and grown by ``margin_xy`` pixels on each side, inside the plane."""
    (mx, my), (dx, dy) = margin_xy, shift_xy
    return box_in_plane(box.x0 + dx - mx, box.y0 + dy - my, box.x1 + dx + mx, box.y1 + dy + my, plane_hw)


def box_in_plane(x0: float, y0: float, x1: float, y1: float, plane_hw: tuple[int, int]) -> Box:
    """The box ``(x0, y0, x1, y1)`` (pixel edges) cut to the plane, at least one pixel wide and high: a
    box moved by an object's motion past the plane's edge becomes the edge's last pixels (it was an
    inverted box, and the whole propagation a 400 on a video whose object leaves the frame)."""
    h, w = plane_hw
    x0, y0 = min(max(0.0, x0), w - 1.0), min(max(0.0, y0), h - 1.0)
    return Box(x0, y0, max(x0 + 1.0, min(float(w), x1)), max(y0 + 1.0, min(float(h), y1)))


def box_around(mask: np.ndarray, margin_xy: tuple[float, float], clip: Box | None = None) -> Box | None:
    """Box (pixel edges) around a 2D mask grown by ``(mx, my)`` pixels; clipped to the image and ``clip``."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    mx, my = margin_xy
    x0, y0 = max(0.0, xs.min() - mx), max(0.0, ys.min() - my)
    x1, y1 = min(float(w), xs.max() + 1 + mx), min(float(h), ys.max() + 1 + my)
    if clip is not None:
        x0, y0 = max(x0, clip.x0), max(y0, clip.y0)
        x1, y1 = min(x1, clip.x1), min(y1, clip.y1)
        if x1 <= x0 or y1 <= y0:
            return None
    return Box(x0, y0, x1, y1)


def interior_point(mask: np.ndarray) -> tuple[float, float] | None:
    """Pixel centre ``(x, y)`` farthest from the mask's border (None for an empty mask)."""
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def stop_reason(mask: np.ndarray, score: float, previous_area: int, config: PropagationConfig) -> str | None:
    """Why propagation should stop after this slice's result, or None to go on."""
    area = int(mask.sum())
    if area < max(config.min_area_px, 1):
        return "empty"
    if previous_area > 0 and area < config.min_area_ratio * previous_area:
        return "area collapse"
    if score < config.min_score:
        return "low score"
    return None


def fuse_views(votes: list[np.ndarray]) -> np.ndarray:
    """Majority of per-view masks on one grid: ``votes`` are bool masks or per-voxel
    fractions in [0, 1] (views resampled to square pixels); a voxel is kept when the views
    that cover it sum to more than half of their number (2 of 3)."""
    total = np.zeros(votes[0].shape, dtype=np.float32)
    for v in votes:
        total += v
    return total > len(votes) / 2


def views_in_vote(votes: list[np.ndarray], min_agreement: float) -> tuple[list[int], list[float]]:
    """Which ``votes`` take part in the fusion: the first (the session axis's view) always,
    each other one when it agrees with the first at Dice >= ``min_agreement``. Returns the
    kept indices and every other view's agreement with the first."""
    agree = [dice(v >= 0.5, votes[0] >= 0.5) for v in votes[1:]]
    return [0] + [i for i, a in enumerate(agree, start=1) if a >= min_agreement], agree
