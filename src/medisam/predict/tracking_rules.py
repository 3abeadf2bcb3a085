"""How the objects of one video frame are prompted and made consistent (:class:`TrackingConfig`,
:func:`resolve_frame`), the rules of :class:`medisam.predict.tracking.TrackingSession`:

1. **Prompts win.** An object prompted on this frame keeps its pixels against objects
   propagated onto it (the user's word beats a prediction).
2. **One object, one track.** When two objects' predictions cover mostly the same pixels
   (IoU >= ``same_object_iou``), they have run into the same object: the one prompted on
   this frame, else the one whose prediction overlaps its own previous mask more, keeps
   it; the other stops (``stop="merged"``). So a track never jumps onto a neighbour's
   object, and no two ids share one.
3. **One label per pixel.** Remaining overlaps go pixel by pixel to the object whose
   mask held the pixel on the previous frame (temporal ownership), else to the highest
   logit (SAM 2's non-overlap constraint); ties to the lower id.
4. **Divisions and fragments.** A mask in several pieces continues as its largest
   connected part, before and after rules 2-3 (prompted masks are kept whole; a dividing
   object is followed as the larger daughter; a fragment of a neighbour caught in a box is
   dropped instead of taken). An object prompted on a frame with at least half of its
   mask inside a propagated object's prediction (and not the same object, rule 2) is a
   daughter of that object: the parent ends there (``stop="divided"``, the CTC lineage
   convention; ``TrackingConfig.divide``). Prompt each daughter where it appears.
5. **Leaving.** An object whose mask is empty after these steps has left the field of
   view (or was taken over by another object) and stops for the rest of the pass
   (``stop="left"``); prompt it again to resume.
6. **Lost.** SAM always answers something inside the box it is given, so an object that
   vanished or left the frame would go on as a made-up mask. A propagated candidate whose
   mask is tiny against the track's recent area (``lost_area``), or whose contrast with its
   surroundings fell to a fraction of the track's recent contrast (``lost_contrast``: the
   object is no longer there, :func:`look_of`; on colour frames the contrast is a difference
   of colours, so an object that differs from its surroundings only in hue is seen), is empty
   and stops (``stop="lost"``) before the other rules, so it takes no pixels; prompt it again
   to resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from medisam.errors import InputError
from medisam.label_boxes import mask_bbox
from medisam.models.transform import InputTransform
from medisam.prompts import Box

#: Decoder passes a :class:`TrackingConfig` can pool per object and frame.
CANDIDATES = ("box", "multimask", "mask-prompt", "chain")

#: Sizes of the tracking box (:attr:`TrackingConfig.extent`).
EXTENTS = ("prompt", "prompt-mask", "previous")

#: Where the prompt-sized box is centred (:attr:`TrackingConfig.centre`): the weight of the
#: whole object's centre against the previous mask's centre.
CENTRES = {"previous": 0.0, "between": 0.5, "chain": 1.0}

#: How the prompt-sized box follows the object's size (:attr:`TrackingConfig.size`).
SIZES = ("follow", "prompt")

#: Width of the ring around a mask that :func:`look_of` compares it with: this fraction of the
#: mask's box size (at least 2 px).
RING_FRACTION = 0.25

#: Weight of the newest frame in a track's recent area and contrast (exponential mean).
RECENT_WEIGHT = 0.5

#: Recent contrast (display levels, 0-255 frames; colour frames: RMS over the channels) below which
#: the contrast test of rule 6 is not made: such an object (a marker inside a nucleus of the same
#: brightness) does not stand out from its surroundings, and its contrast is noise (GOWT1: ratios of
#: -33 to 9 on tracked nuclei). A floor relative to the frame's noise is not safer: a GOWT1 nucleus
#: going into mitosis fell to 0.18 of a recent contrast of 5.9 times the noise (docs/video.md, run 10).
MIN_CONTRAST = 20.0

#: Margin of the ``"chain"`` candidate's box (LiteMedSAM's box chain: 3 px at its 256 input).
CHAIN_MARGIN = 3.0


@dataclass(frozen=True)
class TrackingConfig:
    """How each object is prompted from its previous frame (defaults chosen by
    ``benchmarks/video_tracking.py``).

    Attributes:
        extent: the size of the tracking box: ``"prompt"`` (the box the user drew on the
            prompt frame the object is tracked from, or that prompt's mask's box when it
            was not a box), centred on the previous mask's box: the extent the user chose
            is kept, so the mask does not creep outwards by the margin frame after frame;
            ``"prompt-mask"`` (the prompt's mask's box); ``"previous"`` (the previous
            mask's box, the box chain).
        margin: growth of the tracking box on each side, in pixels of the model's input
            grid (3 = the LiteMedSAM box-chain reference: 3 px at 256).
        candidates: the decoder passes whose masks compete on every frame: ``"box"`` (the
            tracking box alone: SAM's single output, or with ``fit`` the output that fills
            the box best), ``"multimask"`` (SAM's 3 ambiguity
            candidates for it), ``"mask-prompt"`` (the box plus the previous frame's low-res
            logits as the mask prompt), ``"chain"`` (the box-chain reference's box: the
            previous mask's box + ``CHAIN_MARGIN``; it re-acquires an object that grew out
            of a fixed-size box). The candidate overlapping the previous mask most (IoU;
            ties: SAM's predicted IoU) wins: temporal consistency rather than SAM's own
            choice, which drifts between a part and the whole of an object.
        motion: extend the box by the object's last displacement (centroid velocity) in
            the direction it moves: it covers where the object was and where it is heading,
            so a jump of the centroid (a division) cannot push the box off the object.
        flow: measure where each object moved on the frames (template matching,
            :mod:`medisam.predict.tracking_motion`), centre its boxes there and compare the
            candidates with its previous mask moved there: a fast object is not cut by a box
            left behind.
        same_object_iou: IoU of two objects' predictions above which they are the same
            object (rule 2 of the module docstring).
        keep_largest: keep only the largest connected part of a mask (rule 4).
        divide: end a propagated object when a new object is prompted inside it (rule 4).
        centre: where a box of the prompt's extent is centred: ``"previous"`` (the previous
            mask's box, after flow); ``"chain"`` (the box of the mask the chain candidate's
            looser box gives, the whole object as SAM sees it; with the ``"chain"``
            candidate in the pool this is that pass, so it costs no extra decoding);
            ``"between"`` (halfway between the two). A box smaller than the object it sits in
            (a marker inside a nucleus, a lesion core) has no pull back to the object's centre when centred on its own
            previous mask: the track random-walks across the object and off it. The whole
            object's centre pulls it back; halfway keeps most of the previous position
            where a neighbour leaks into the chain's mask.
        clip: every mask of the object stays inside the box it was prompted with, grown by
            this many pixels of the model's input grid (None: uncut). The user's box says
            where the object ends; SAM's mask often spills past it (a whole nucleus for a box
            of its marker, a brighter neighbour), and a spilled mask on one frame widens the
            next frame's boxes. The prompt frame's mask is cut to the drawn box too (what the prompt
            returns is what the label map shows; a prompt with clicks or a mask stays whole). With a
            clip, the ``"chain"`` candidate's box is the previous frame's *whole-object*
            mask's box (not the clipped mask's) plus ``CHAIN_MARGIN``: it keeps seeing the
            whole object, which the centring and ``size`` need.
        size: ``"follow"``: the prompt-sized box grows and shrinks with the whole object (the
            square root of the chain mask's area against its area on the first frame tracked
            from the prompt), so a clipped mask is not capped at the prompt's size when the
            object grows; a whole-object mask that reaches a side of its box (not the image's
            edge) was cut by the box and leaves the size as it was. ``"prompt"``: the size
            the user drew, always.
        fit: the mask of the user's box on the prompt frame, and of the ``"box"`` candidate
            on every tracked frame, is the decoder's candidate (its single output or one of its
            3 multimask outputs, each cut to the box) whose bounding box fits the box best
            (:func:`box_fill`); ties keep the single output. A tight box touches the object on
            all four sides, but SAM's single output sometimes takes a part of it (half of a
            dim nucleus, with the dark background beside it), and a track started from half
            an object walks off it; a mask that fills the box is the object boxed. The four
            outputs come from one decoder pass, so it costs no extra pass on tracked frames
            (one per prompt). A prompt with clicks or a mask keeps the single output.
        lost_area: a propagated mask smaller than this fraction of the track's recent area
            (:data:`RECENT_WEIGHT`) is not the object: the track stops (``stop="lost"``,
            rule 6). None: never.
        lost_contrast: a propagated mask whose contrast with its surroundings
            (:func:`look_of`) is below this fraction of the track's recent contrast is not the
            object any more (it vanished, or left the frame and SAM segments what is left in
            the box): the track stops (``stop="lost"``). None: never.
    """

    extent: str = "prompt"
    margin: float = 0.0
    candidates: tuple[str, ...] = ("box", "chain")
    motion: bool = True
    flow: bool = True
    same_object_iou: float = 0.5
    keep_largest: bool = True
    divide: bool = True
    centre: str = "between"
    clip: float | None = 0.0
    size: str = "follow"
    fit: bool = True
    lost_area: float | None = 0.2
    lost_contrast: float | None = 0.3

    @property
    def decoder_passes(self) -> int:
        """Decoder passes per object and tracked frame (one per candidate; the chain's box is
        decoded for the centring and ``size`` even when it is not a candidate)."""
        centring = self.extent != "previous" and CENTRES[self.centre] > 0 and "chain" not in self.candidates
        return len(set(self.candidates)) + int(centring)

    def __post_init__(self) -> None:
        unknown = set(self.candidates) - set(CANDIDATES)
        if not self.candidates or unknown:
            raise InputError(f"candidates must be some of {', '.join(CANDIDATES)}, got {self.candidates!r}")
        if self.centre not in CENTRES:
            raise InputError(f"centre must be one of {', '.join(CENTRES)}, got {self.centre!r}")
        if self.size not in SIZES:
            raise InputError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.clip is not None and not self.clip >= 0:
            raise InputError(f"clip must be a margin >= 0 (model-grid pixels) or None, got {self.clip!r}")
        if self.extent not in EXTENTS:
            raise InputError(f"extent must be one of {', '.join(EXTENTS)}, got {self.extent!r}")


@dataclass
class Candidate:
    """One object's prediction on a frame, before the frame's masks are made consistent."""

    mask: np.ndarray  # (H, W) bool
    low_res_logits: np.ndarray | None  # (L, L) model-grid logits (None for a user-given mask)
    score: float
    prompted: bool  # prompted on this frame (rule 1)
    previous: np.ndarray | None = None  # the object's mask on the previous frame of the pass
    fixed: bool = False  # pixels of an object from another pass: never taken (see "both")
    lost: bool = False  # the object is no longer there (rule 6): empty, and the track stops


@dataclass(frozen=True)
class Look:
    """What a track's mask looks like on a frame: its area (px) and its contrast with its
    surroundings (mean inside minus mean of a ring around it, frame units).

    On a colour frame ``colour`` is that difference per channel (R, G, B) and ``contrast`` its
    size: the Euclidean distance of the two mean colours over sqrt(3) (the RMS over channels),
    so an object that differs from its surroundings only in hue (a red polyp on pink mucosa of
    the same grey level) has a contrast, and a grey frame shown in colour (R = G = B) has the
    grey frame's contrast in the same display levels (:data:`MIN_CONTRAST` holds for both)."""

    area: float
    contrast: float
    at_edge: bool = False  # the mask touches the frame's edge
    colour: tuple[float, ...] | None = None  # colour frames: the contrast per channel

    def recent(self, newer: "Look") -> "Look":
        """The track's recent look after ``newer`` (exponential mean, :data:`RECENT_WEIGHT`)."""
        w = RECENT_WEIGHT
        area = (1 - w) * self.area + w * newer.area
        if self.colour is None or newer.colour is None:
            return Look(area, (1 - w) * self.contrast + w * newer.contrast)
        colour = tuple((1 - w) * a + w * b for a, b in zip(self.colour, newer.colour))
        return Look(area, _size(colour), colour=colour)

    def ratio(self, recent: "Look") -> float:
        """This contrast as a fraction of the ``recent`` one (rule 6). Colour: the projection of
        this colour difference on the recent one (1: the same, 0: no difference or one in
        another direction, below 0: reversed); grey: the signed ratio."""
        if self.colour is None or recent.colour is None:
            return self.contrast / recent.contrast
        mine, theirs = np.asarray(self.colour), np.asarray(recent.colour)
        return float(mine @ theirs / (theirs @ theirs))


def _size(colour: tuple[float, ...]) -> float:
    """The size of a per-channel difference in display levels: its RMS over the channels."""
    return float(np.sqrt(np.mean(np.square(colour))))


def look_of(frame: np.ndarray, mask: np.ndarray) -> Look | None:
    """The :class:`Look` of ``mask`` on ``frame``: ``(H, W)`` grey or ``(H, W, C)`` colour (None for
    an empty mask or no ring: a mask filling the frame). The ring is :data:`RING_FRACTION` of the
    mask's box size wide."""
    sl = mask_bbox(mask)
    if sl is None:
        return None
    r = max(2, int(round(RING_FRACTION * max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))))
    h, w = mask.shape
    win = (slice(max(0, sl[0].start - r), min(h, sl[0].stop + r)),
           slice(max(0, sl[1].start - r), min(w, sl[1].stop + r)))
    inside = mask[win]
    ring = cv2.dilate(inside.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool) & ~inside
    if not ring.any():
        return None
    pixels = np.asarray(frame[win], dtype=np.float64)
    edge = sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w
    if pixels.ndim == 2:
        return Look(float(inside.sum()), float(pixels[inside].mean() - pixels[ring].mean()), edge)
    colour = tuple(float(v) for v in pixels[inside].mean(axis=0) - pixels[ring].mean(axis=0))
    return Look(float(inside.sum()), _size(colour), edge, colour)


def is_lost(look: Look | None, recent: Look | None, config: TrackingConfig) -> bool:
    """Rule 6: True when a propagated mask's ``look`` says the object is no longer there
    against the track's ``recent`` look: a mask below ``lost_area`` of the recent area (not at
    the frame's edge, where an object leaving shrinks), or a contrast below ``lost_contrast`` of
    the recent one (:meth:`Look.ratio`: same sign, or on colour frames the same colour direction;
    only for a recent contrast of at least :data:`MIN_CONTRAST`)."""
    if recent is None or look is None:  # an empty mask is rule 5's ("left")
        return False
    if config.lost_area is not None and not look.at_edge and look.area < config.lost_area * recent.area:
        return True
    if config.lost_contrast is None or abs(recent.contrast) < MIN_CONTRAST:
        return False
    return look.ratio(recent) < config.lost_contrast


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a 2D bool mask (the mask itself when in one piece)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def full_logits(transform: InputTransform, low_res: np.ndarray) -> np.ndarray:
    """``(L, L)`` low-res logits -> ``(H, W)`` float32 logits on the original grid (the
    resampling :meth:`InputTransform.masks_to_original` thresholds)."""
    logits = np.asarray(low_res, dtype=np.float32)
    if logits.shape[-1] != transform.input_size:
        logits = cv2.resize(logits, (transform.input_size,) * 2, interpolation=cv2.INTER_LINEAR)
    h, w = transform.resized_hw
    cropped = logits[:h, :w]
    if cropped.shape != transform.original_hw:
        cropped = cv2.resize(cropped, transform.original_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return cropped


def _keeper(a: int, b: int, cands: dict[int, Candidate]) -> int:
    """Which of two objects with the same prediction keeps it (rule 2)."""
    ca, cb = cands[a], cands[b]
    for key in (lambda c: c.fixed, lambda c: c.prompted,
                lambda c: iou(c.mask, c.previous) if c.previous is not None else 0.0):
        ka, kb = key(ca), key(cb)
        if ka != kb:
            return a if ka > kb else b
    return min(a, b)


def box_fill(mask: np.ndarray, box: Box) -> float:
    """IoU of a mask's bounding box with ``box`` (0 for an empty mask): how well a mask
    fills the tight box it was prompted with, which touches the object on all four sides."""
    sl = mask_bbox(mask)
    if sl is None:
        return 0.0
    y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
    inter = max(0.0, min(x1, box.x1) - max(x0, box.x0)) * max(0.0, min(y1, box.y1) - max(y0, box.y0))
    union = (x1 - x0) * (y1 - y0) + (box.x1 - box.x0) * (box.y1 - box.y0) - inter
    return float(inter / union) if union > 0 else 0.0


def _union(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice] | None:
    """The bounding box of two boxes, or None when they do not intersect."""
    if a[0].start >= b[0].stop or b[0].start >= a[0].stop or a[1].start >= b[1].stop or b[1].start >= a[1].stop:
        return None
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def resolve_frame(cands: dict[int, Candidate], transform: InputTransform | None,
                  config: TrackingConfig) -> dict[int, tuple[np.ndarray, str | None]]:
    """Make one frame's masks consistent (rules 1-6): ``{obj: (mask, stop reason or None)}``.

    ``transform`` maps low-res logits to the frame (needed only when masks overlap).
    """
    def tidy(mask: np.ndarray, fixed: bool) -> np.ndarray:
        box = mask_bbox(mask)
        if box is not None and config.keep_largest and not fixed:
            mask[box] = largest_part(mask[box])
        return mask

    # fragments never compete; a prompted frame keeps the mask its prompt gave; a lost object has none (rule 6)
    masks = {o: np.zeros_like(c.mask) if c.lost else tidy(c.mask.copy(), c.fixed or c.prompted)
             for o, c in cands.items()}
    boxes = {o: mask_bbox(m) for o, m in masks.items()}
    stops: dict[int, str | None] = {o: "lost" if c.lost else None for o, c in cands.items()}
    ids = sorted(cands)
    if config.divide:  # rule 4: a new object prompted inside a tracked one is a daughter; the parent ends
        for a in (o for o in ids if cands[o].prompted and boxes[o] is not None):
            for b in (o for o in ids if not cands[o].prompted and not cands[o].fixed and boxes[o] is not None):
                shared = np.logical_and(masks[a], masks[b]).sum()
                if shared >= 0.5 * masks[a].sum() and iou(masks[a], masks[b]) < config.same_object_iou:
                    stops[b], boxes[b] = "divided", None
                    masks[b][:] = False
    contested = None
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if stops[a] or stops[b] or boxes[a] is None or boxes[b] is None:
                continue
            sl = _union(boxes[a], boxes[b])
            if sl is None:
                continue
            if iou(masks[a][sl], masks[b][sl]) >= config.same_object_iou:  # rule 2: one object, one track
                loser = b if _keeper(a, b, cands) == a else a
                stops[loser] = "merged"
                masks[loser][:] = False
                boxes[loser] = None
            elif np.logical_and(masks[a][sl], masks[b][sl]).any():
                if contested is None:
                    contested = np.zeros(masks[a].shape, dtype=bool)
                contested[sl] |= masks[a][sl] & masks[b][sl]
    if contested is not None and contested.any():
        _split_pixels(contested, masks, cands, [o for o in ids if boxes[o] is not None], transform)
    for o in ids:
        if stops[o] is None and not tidy(masks[o], cands[o].fixed or cands[o].prompted).any():
            stops[o] = "left"
    return {o: (masks[o], stops[o]) for o in ids}


def _split_pixels(contested: np.ndarray, masks: dict[int, np.ndarray], cands: dict[int, Candidate],
                  live: list[int], transform: InputTransform | None) -> None:
    """Give each contested pixel to one object: prompted (and fixed) objects first (rule 1),
    then the highest logit (rule 3), ties to the lower id; ``masks`` are edited in place."""
    sl = mask_bbox(contested)
    region = contested[sl]
    best = np.full(region.shape, -np.inf, dtype=np.float32)
    owner = np.zeros(region.shape, dtype=np.int64)
    for o in live:
        c, inside = cands[o], masks[o][sl] & region
        if not inside.any():
            continue
        if c.low_res_logits is not None and transform is not None:
            value = full_logits(transform, c.low_res_logits)[sl]
        else:
            value = np.full(region.shape, 1e3, dtype=np.float32)
        rank = 2 if c.fixed else 1 if c.prompted else 0
        if c.previous is not None:  # temporal ownership: a pixel stays with the object it was on
            value = value + 1e3 * c.previous[sl]
        value = np.where(inside, value + 1e4 * rank, -np.inf)
        better = value > best
        best[better], owner[better] = value[better], o
    for o in live:
        masks[o][sl][region & (owner != o)] = False
