"""Corrective 3D clicks as a random-walker refinement around the model's mask (numpy/scipy only).

Box-trained models (LiteMedSAM) mostly ignore point prompts, so a click acts through a
principled refinement instead (Grady's random walker with a prior, "Multilabel random walker
image segmentation using prior models", CVPR 2005): on a crop around the object, minimise

    x' L x + sum_i lam_i (x_i - p_i)^2,   x = 1 on positive clicks, 0 on negative clicks
                                           and outside the object's 3D box,

where ``L`` is the graph Laplacian of the 6-connected voxel grid with weights
``exp(-beta * (dI / std)^2)`` on the display volume the model sees, and ``p`` the prior: the
model's mask (a sigmoid of its signed distance) mixed with an intensity model (a Gaussian of
the object's intensity, fitted on the model's mask and the positive clicks, against the
crop's histogram). Around each click the prior's weight fades (radius: the click's distance to
the current mask's boundary, as the protocol places clicks in the middle of an error), so the
click, not the model, decides there. A background click on a voxel that other objects hold
too gives them, within its radius, what they hold (the prior 0 there, at full weight). The
voxels ``x > 0.5`` are the new mask of the crop.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg

from medisam.predict.store import Click3D


@dataclass(frozen=True)
class RefineParams:
    """Weights of the refinement (see docs/interactive3d.md).

    ``seed_radius`` and ``softness`` were chosen with ``benchmarks/walker_params.py`` on the 52
    even-position hippocampus cases (held-out: the other 51), the rest on 6 cases earlier.
    """

    beta: float = 4.0  # edge sensitivity: weight exp(-beta * (dI / std)^2)
    prior_weight: float = 0.5  # lam far from clicks
    softness: float = 4.0  # voxels of the finest spacing: sigmoid scale of the model mask's signed distance
    intensity_mix: float = 0.5  # share of the intensity model in the prior
    #: the object's intensity Gaussian is at least this share of the rest's spread (0: no floor). A
    #: positive click on an object's edge samples partial-volume voxels only: a narrow Gaussian there
    #: made the object's core unlikely and the click removed it (stop 51, docs/interactive3d.md)
    object_sd_share: float = 0.4
    click_scale: float = 1.5  # fade radius = click_scale * distance to the current boundary
    min_radius: float = 2.0  # voxels
    seed_radius: float = 3.0  # voxels: a click fixes this ball (within ``inside``)
    pad: int = 2  # voxels around the box and the clicks
    sample_radius: float = 3.0  # voxels around a positive click that sample the object's intensity
    #: also sample the object's intensity on the model's mask (less what negative clicks removed)
    #: when a positive click samples it (False: the clicks' balls only; measured in 3D, docs/interactive3d.md)
    sample_model_mask: bool = False
    #: a positive click's fade radius is at most this many times the radius of a ball of the
    #: object's current volume (None: no cap): its distance to a small mask far away is no
    #: measure of the error (measured in docs/interactive3d.md, "A positive click far from a small mask")
    size_scale: float | None = 2.0
    #: a positive click only adds to the mask (True) or takes the re-solved crop (False; within ``positive_reach``).
    #: Measured: in 3D re-solving wins (hippocampus AUC 2.967 against 2.881), in 2D only adding
    #: (11 sets; docs/benchmark.md, ``benchmarks/clicks_2d.py --positive-rule``); a negative click
    #: only removes (:func:`apply_click`)
    positive_only_adds: bool = False
    #: a positive click that re-solves removes voxels only within this many times its radius; farther
    #: away it only adds (None: it removes anywhere). Its new intensity sample made the re-solve drop true
    #: voxels far from it (BraTS pat0006's oedema 0.75 -> 0.62 on one click; docs/interactive3d.md, stop 59)
    positive_reach: float | None = 4.0
    #: largest crop the walker solves (~0.4 GiB and ~1 s of CG per million voxels here): a
    #: larger object's click is solved on the part of its crop around the click
    max_voxels: int = 2_000_000
    #: a background click on a voxel that other objects hold too (``Click3D.yields``) gives them, within
    #: its radius, what they hold: this object's prior is 0 there, at full weight. False: it acts as
    #: any background click, whose fading prior left most of a large false blob (BraTS DSC AUC 1.940
    #: against 2.056; docs/interactive3d.md, "A background click on a voxel another object holds")
    negative_yields: bool = True
    #: share of the background clicks' own intensity in the walker's model of "not the object": a
    #: Gaussian fitted on the balls of ``sample_radius`` around the background clicks, mixed with the rest of the crop's
    #: (0: the rest of the crop only). Voxels that look like where the user said "not this" become
    #: less likely the object (BraTS DSC AUC 2.056 -> 2.180; docs/interactive3d.md, stop 58)
    negative_sample: float = 0.5
    #: clicks solved together (a scribble's): each acts at most ``click_scale`` times this many times its
    #: distance to the nearest of them (None: no cap). One by one, each click's radius was measured after
    #: the previous one had changed the mask around it, so it was about that distance; measured against
    #: the mask before them all, a stroke deep inside a large leak faded the model's prior hundreds of
    #: pixels wide (``benchmarks/scribbles.py``). 2 in 3D (stop 64: BraTS after 3 scribbles 0.514 with 1, 0.527
    #: with 2, 0.507 with 4 or none; the hippocampus level), 4 in 2D (``refine2d.PARAMS_2D``)
    stroke_cap: float | None = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_sample <= 1.0:
            raise ValueError(f"negative_sample is a share, 0..1, not {self.negative_sample}")
        if self.positive_reach is not None and not self.positive_reach > 0:
            raise ValueError(f"positive_reach is a positive multiple of a click's radius or None, not "
                             f"{self.positive_reach}")
        if self.stroke_cap is not None and not self.stroke_cap > 0:
            raise ValueError(f"stroke_cap is a positive multiple of a click's gap to the next or None, not "
                             f"{self.stroke_cap}")


def apply_click(solved: np.ndarray, current: np.ndarray, click: Click3D, params: RefineParams,
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The mask after ``click`` (at voxels of the crop), from the walker's re-solved crop ``solved`` and
    the mask ``current`` before it (same crop): a negative click only removes; a positive one only adds
    where ``params.positive_only_adds``, else takes ``solved`` as it is within ``params.positive_reach``
    times its radius and only adds beyond."""
    return apply_clicks(solved, current, [click], params, spacing)


def apply_clicks(solved: np.ndarray, current: np.ndarray, clicks: Sequence[Click3D], params: RefineParams,
                 spacing: Sequence[float] = (1.0, 1.0, 1.0), reach: np.ndarray | None = None) -> np.ndarray:
    """:func:`apply_click` for several new clicks of one sign solved together (a scribble's): a positive
    one's re-solve is taken within the reach of any of them. ``reach``: those voxels
    (:func:`near_clicks` at ``params.positive_reach``), where the caller has them."""
    if not clicks or any(c.positive != clicks[0].positive for c in clicks):
        raise ValueError("apply_clicks needs one or more clicks of one sign")
    if not clicks[0].positive:
        return solved & current
    if params.positive_only_adds:
        return solved | current
    if params.positive_reach is None:
        return solved
    if reach is None:
        reach = near_clicks(solved.shape, clicks, spacing, (params.positive_reach,))[0]
    return np.where(reach, solved, solved | current)


def near_clicks(shape: Sequence[int], clicks: Sequence[Click3D], spacing: Sequence[float],
                scales: Sequence[float]) -> list[np.ndarray]:
    """For each of ``scales``, the voxels of a ``shape`` crop within that many radii of any of ``clicks``
    (one distance map per click, shared by the scales)."""
    out = [np.zeros(tuple(shape), dtype=bool) for _ in scales]
    for click in clicks:
        d2 = squared_distance(shape, click.zyx, spacing)
        for mask, scale in zip(out, scales):
            mask |= d2 <= (scale * click.radius) ** 2
    return out


def no_contrast(features: np.ndarray, where: np.ndarray) -> bool:
    """Whether every channel of the walker's ``features`` is constant on ``where`` (the object's
    box on the crop). The walker then has no edge to follow, and its re-solve around a positive
    click shrinks the model's mask to the click's neighbourhood (a constant image: Dice 0.533 ->
    0.288 at the first click, ``benchmarks/edge_volumes.py``), so such a click only adds."""
    values = _channels_last(features)[where]
    return values.size == 0 or bool((np.ptp(values, axis=0) == 0).all())


def _channels_last(img: np.ndarray) -> np.ndarray:
    """``(Z, Y, X, C)`` features of a ``(Z, Y, X)`` volume (one channel) or of ``(Z, Y, X, C)``."""
    return img if img.ndim == 4 else img[..., None]


def laplacian(img: np.ndarray, beta: float) -> sparse.csr_matrix:
    """Graph Laplacian of the 6-connected grid of ``img`` with intensity weights.

    ``img``: ``(Z, Y, X)``, or ``(Z, Y, X, C)`` for several channels (e.g. FLAIR and T1c): the
    squared step is the mean over channels of each channel's step over its own spread, so one
    channel gives the same weights either way."""
    feats = _channels_last(img)
    s = feats.reshape(-1, feats.shape[-1]).std(axis=0) + 1e-6
    shape = feats.shape[:3]
    size = int(np.prod(shape))
    idx = np.arange(size).reshape(shape)
    rows, cols, vals = [], [], []
    for ax in range(3):
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[ax], b[ax] = slice(0, -1), slice(1, None)
        d2 = (((feats[tuple(a)] - feats[tuple(b)]) / s) ** 2).mean(axis=-1)
        rows.append(idx[tuple(a)].ravel())
        cols.append(idx[tuple(b)].ravel())
        vals.append((np.exp(-beta * d2) + 1e-6).ravel())
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    w = sparse.coo_matrix((np.concatenate([v, v]), (np.concatenate([r, c]), np.concatenate([c, r]))),
                          shape=(size, size)).tocsr()
    return (sparse.diags(np.asarray(w.sum(axis=1)).ravel()) - w).tocsr()


def solve_prior_walker(lap: sparse.csr_matrix, lam: np.ndarray, prior: np.ndarray, fg: np.ndarray,
                       bg: np.ndarray) -> np.ndarray:
    """``argmin x'Lx + sum lam (x - prior)^2`` with ``x = 1`` on ``fg`` and 0 on ``bg`` (CG, Jacobi)."""
    fixed = (fg | bg).ravel()
    free = ~fixed
    x = fg.ravel().astype(np.float64)
    if not free.any():
        return x.reshape(prior.shape)
    a = (lap + sparse.diags(lam.ravel())).tocsr()
    a_ff = a[free][:, free]
    rhs = (lam.ravel() * prior.ravel())[free] - a[free][:, fixed] @ x[fixed]
    diag = a_ff.diagonal()
    sol, _ = cg(a_ff, rhs, x0=prior.ravel()[free], M=sparse.diags(1.0 / np.maximum(diag, 1e-9)), rtol=1e-4,
                maxiter=400)
    x[free] = sol
    return x.reshape(prior.shape)


def intensity_ratio(img: np.ndarray, fg_sample: np.ndarray, min_sd: float = 5.0, sd_share: float = 0.0,
                    bg_sample: np.ndarray | None = None, bg_share: float = 0.0) -> np.ndarray:
    """Likelihood ratio p(I | object) / p(I | rest): Gaussians fitted on ``fg_sample`` and the rest,
    each at least ``min_sd`` wide, the object's at least ``sd_share`` of the rest's spread. With
    ``bg_sample`` (voxels said not to be the object), p(I | rest) mixes a Gaussian fitted there,
    at ``bg_share``, with the rest's.

    ``img`` ``(Z, Y, X)`` or ``(Z, Y, X, C)``: with channels, one Gaussian per channel and the
    log densities summed (channels taken as independent)."""
    feats = _channels_last(img)
    a, b = feats[fg_sample], feats[~fg_sample]
    if b.shape[0] < 3:
        return np.ones(fg_sample.shape)
    c = None if bg_sample is None or bg_share <= 0 or bg_sample.sum() < 3 else feats[bg_sample]
    log_a, log_b = np.zeros(fg_sample.shape), np.zeros(fg_sample.shape)
    log_c = None if c is None else np.zeros(fg_sample.shape)  # a crop-sized array only when it is used
    for k in range(feats.shape[-1]):
        mu_b, sd_b = float(b[:, k].mean()), max(float(b[:, k].std()), min_sd)
        mu_a, sd_a = float(np.median(a[:, k])), max(float(a[:, k].std()), min_sd, sd_share * sd_b)
        f = feats[..., k]
        log_a += -0.5 * ((f - mu_a) / sd_a) ** 2 - np.log(sd_a)
        log_b += -0.5 * ((f - mu_b) / sd_b) ** 2 - np.log(sd_b)
        if log_c is not None:
            mu_c, sd_c = float(np.median(c[:, k])), max(float(c[:, k].std()), min_sd, sd_share * sd_b)
            log_c += -0.5 * ((f - mu_c) / sd_c) ** 2 - np.log(sd_c)
    if log_c is not None:
        log_b = np.logaddexp(np.log1p(-bg_share) + log_b if bg_share < 1 else -np.inf, np.log(bg_share) + log_c)
    return np.exp(np.clip(log_a - log_b, -6.0, 6.0))


def voxel_scale(spacing: Sequence[float]) -> np.ndarray:
    """Voxel size per axis in voxels of the finest spacing: the unit of every distance here (radii,
    the prior's depth), so that a 5 mm slice counts as 5 steps of a 1 mm in-plane voxel."""
    return np.asarray(spacing, dtype=float) / float(min(spacing))


def click_radius(current: np.ndarray, zyx: Sequence[int], positive: bool, spacing: Sequence[float],
                 params: RefineParams = RefineParams(), volume: int | None = None) -> float:
    """How far (voxels of the finest spacing) a click acts: ``click_scale`` times its distance to
    the current mask's boundary (the protocol clicks the middle of an error), at least ``min_radius``;
    a positive click's at most ``size_scale`` times the radius of a ball of the object's volume
    (``volume`` voxels: the whole object's where ``current`` is only a window of it; None: ``current``'s)."""
    return click_radii(current, [zyx], positive, spacing, params, volume)[0]


def click_radii(current: np.ndarray, voxels: Sequence[Sequence[int]], positive: bool, spacing: Sequence[float],
                params: RefineParams = RefineParams(), volume: int | None = None) -> list[float]:
    """:func:`click_radius` of several clicks of one sign on the same mask, with one distance transform."""
    target = current if positive else ~current
    if not target.any():
        return [params.min_radius] * len(voxels)
    dist = ndimage.distance_transform_edt(~target, sampling=voxel_scale(spacing))
    cap = float("inf")
    if positive:
        cap = size_cap(int(current.sum()) if volume is None else max(int(volume), int(current.sum())), spacing, params)
    return [max(params.min_radius, min(params.click_scale * float(dist[tuple(int(c) for c in v)]), cap))
            for v in voxels]


def stroke_radii(radii: Sequence[float], voxels: Sequence[Sequence[int]], spacing: Sequence[float],
                 params: RefineParams = RefineParams()) -> list[float]:
    """The radii of clicks solved together (one stroke): each at most ``params.stroke_cap`` times
    ``click_scale`` times its distance to the nearest other of ``voxels`` (voxels of the finest
    spacing), at least ``min_radius``; unchanged for one click or without a cap."""
    if params.stroke_cap is None or len(voxels) < 2:
        return list(radii)
    pts = np.asarray(voxels, dtype=float) * voxel_scale(spacing)
    gaps = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1))
    np.fill_diagonal(gaps, np.inf)
    reach = params.stroke_cap * params.click_scale * gaps.min(axis=1)
    return [max(params.min_radius, min(float(r), float(g))) for r, g in zip(radii, reach)]


def size_cap(voxels: int, spacing: Sequence[float], params: RefineParams = RefineParams()) -> float:
    """A positive click's largest radius (voxels of the finest spacing): ``size_scale`` times the
    radius of a ball of the object's ``voxels`` (infinite without a cap)."""
    if params.size_scale is None:
        return float("inf")
    sampling = voxel_scale(spacing)
    return params.size_scale * ball_radius(voxels * float(np.prod(sampling)))


def ball_radius(volume: float) -> float:
    """Radius of the ball of ``volume`` (same units cubed)."""
    return float((3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0))


#: Radii of a click past which its fade ``1 - exp(-d^2 / 2r^2)`` is 1.0 in float64 (exp(-40) is below half
#: an ulp of 1): the prior's weight there is exactly what it was, so a click is applied on the box of
#: this reach only (:func:`click_reach`) and a long session's old clicks cost their reach, not the crop each
FADE_REACH = float(np.sqrt(80.0))


def click_reach(shape: Sequence[int], zyx: Sequence[int], spacing: Sequence[float],
                reach: float) -> tuple[slice, slice, slice] | None:
    """The part of a ``shape`` crop within ``reach`` (voxels of the finest spacing) of ``zyx`` on every
    axis, as slices (a box holding every voxel at that distance or nearer); None where it misses the crop."""
    f = voxel_scale(spacing)
    half = np.floor(reach / f).astype(int) + 1
    lo = np.maximum(np.asarray(zyx, dtype=int) - half, 0)
    hi = np.minimum(np.asarray(zyx, dtype=int) + half + 1, shape)
    if (lo >= hi).any():
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def squared_distance(shape: Sequence[int], zyx: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Squared distance of every voxel of a ``shape`` grid to ``zyx``, in voxels of the finest spacing."""
    f = voxel_scale(spacing)
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return ((zz - zyx[0]) * f[0]) ** 2 + ((yy - zyx[1]) * f[1]) ** 2 + ((xx - zyx[2]) * f[2]) ** 2


def _edt(mask: np.ndarray, sampling: np.ndarray) -> np.ndarray:
    """Distance of every voxel of ``mask`` to the nearest voxel outside it (0 off ``mask``); a mask
    without an outside voxel is everywhere as far as the grid's diagonal."""
    if mask.all():
        return np.full(mask.shape, float(np.linalg.norm(np.multiply(mask.shape, sampling))))
    return ndimage.distance_transform_edt(mask, sampling=sampling)


def model_prior(model_mask: np.ndarray, inside: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                softness: float = RefineParams.softness) -> np.ndarray:
    """How sure the model is of each voxel: a sigmoid of the signed distance to its mask's boundary.

    Distances are in voxels of the finest spacing (as the clicks' radii): on 5 mm slices a mask
    three slices thick is 10 mm deep at its middle, not 2 voxels. The faces of the object's box
    (``inside``) are not the mask's boundary: they bound where the object may be (the walker's
    background seeds), they say nothing of where the model's mask ends. Counting them made every
    voxel of a one-slice object 1 voxel deep (prior ~0.56), and a click on it wiped it.
    """
    sampling = voxel_scale(spacing)
    sd = _edt(model_mask | ~inside, sampling) - _edt(~model_mask, sampling)
    return 1.0 / (1.0 + np.exp(-sd / softness))


@dataclass
class ClickFields:
    """What a sequence of clicks makes of a crop, before the walker: the prior's weight ``lam``, the
    fixed voxels ``fg`` / ``bg``, the intensity samples, the voxels negative clicks ``removed`` and those
    yielding clicks give the others (``zero``). Applying clicks in order to these is all the walker
    needs of them, so fields of a click sequence extend to a longer one by the added clicks alone."""

    lam: np.ndarray
    fg: np.ndarray
    bg: np.ndarray
    sample: np.ndarray
    neg_sample: np.ndarray
    removed: np.ndarray
    zero: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...], params: RefineParams) -> "ClickFields":
        return cls(np.full(shape, params.prior_weight), *(np.zeros(shape, bool) for _ in range(6)))

    @classmethod
    def of(cls, shape: tuple[int, ...], inside: np.ndarray, clicks: Sequence[Click3D], spacing: Sequence[float],
           params: RefineParams, shared: np.ndarray | None) -> "ClickFields":
        out = cls.empty(shape, params)
        out.apply(inside, clicks, spacing, params, shared)
        return out

    def copy(self) -> "ClickFields":
        return ClickFields(*(a.copy() for a in (self.lam, self.fg, self.bg, self.sample, self.neg_sample,
                                                 self.removed, self.zero)))

    def apply(self, inside: np.ndarray, clicks: Sequence[Click3D], spacing: Sequence[float], params: RefineParams,
              shared: np.ndarray | None) -> None:
        """Apply ``clicks`` in order (in place), each on the part of the crop it acts on (:func:`click_reach`)."""
        shape = self.lam.shape
        for click in clicks:
            zyx, r = click.zyx, click.radius
            part = click_reach(shape, zyx, spacing, max(FADE_REACH * r, params.seed_radius, r))
            if part is None:
                continue  # a click far off a bounded crop: its fade is 1.0 (exactly) on every voxel of it
            at = tuple(int(c) - p.start for c, p in zip(zyx, part))
            d2 = squared_distance([p.stop - p.start for p in part], at, spacing)
            fade = 1.0 - np.exp(-d2 / (2.0 * r * r))
            if click.yields and params.negative_yields and shared is not None:
                given = (d2 <= r * r) & shared[part]  # what the others hold within its radius, at full weight
                self.zero[part] |= given
                fade[given] = 1.0
            self.lam[part] *= fade
            ball = (d2 <= params.seed_radius ** 2) & inside[part]  # never past the object's box
            if all(0 <= c < n for c, n in zip(at, ball.shape)):  # an earlier click may lie off a bounded crop
                ball[at] = True
            if click.positive:
                self.fg[part] |= ball
                self.bg[part] &= ~ball
                self.sample[part] |= d2 <= min(r, params.sample_radius) ** 2
            else:
                self.bg[part] |= ball
                self.fg[part] &= ~ball
                self.removed[part] |= d2 <= r * r
                self.neg_sample[part] |= d2 <= min(r, params.sample_radius) ** 2


def _digest(a: np.ndarray | None) -> str | None:
    return None if a is None else hashlib.sha1(np.ascontiguousarray(a).view(np.uint8).ravel()).hexdigest()


class ClickMemo:
    """The :class:`ClickFields` of a session's last walker calls, so that a click extends them instead of
    applying every click so far again (each costs its reach of the crop; 160 clicks held made a click
    about twice as slow). Kept: the fields before the last call's new clicks and after all of them (a
    click after an undo extends the first), only for the same crop, box, spacing, weights and ``shared``;
    at most :data:`MEMO_ENTRIES` crops' worth of arrays, so the session's memory stays bounded."""

    def __init__(self) -> None:
        self._entries: list[tuple[tuple, tuple[Click3D, ...], ClickFields]] = []
        self._lock = threading.Lock()
        self.hits = 0  # calls that extended kept fields (tests count them)

    def fields(self, shape: tuple[int, ...], inside: np.ndarray, clicks: Sequence[Click3D],
               spacing: Sequence[float], params: RefineParams, shared: np.ndarray | None) -> ClickFields:
        clicks = tuple(clicks)
        uses_shared = shared is not None and any(c.yields for c in clicks)
        key = (tuple(shape), tuple(float(v) for v in spacing), params, _digest(inside),
               _digest(shared) if uses_shared else None)
        with self._lock:
            best = max(((len(done), fields) for k, done, fields in self._entries
                        if k == key and clicks[:len(done)] == done), default=(0, None), key=lambda e: e[0])
        n, kept = best
        out = ClickFields.empty(tuple(shape), params) if kept is None else kept.copy()
        self.hits += kept is not None
        new = len(clicks) - 1 if n < len(clicks) - 1 else n  # the fields before the last click are kept too
        out.apply(inside, clicks[n:new], spacing, params, shared if uses_shared else None)
        before = out.copy()
        out.apply(inside, clicks[new:], spacing, params, shared if uses_shared else None)
        with self._lock:
            self._entries = [(key, clicks[:new], before), (key, clicks, out.copy())]
        return out


#: Fields a :class:`ClickMemo` keeps (the last call's before and after its new clicks).
MEMO_ENTRIES = 2


def refine_crop(display: np.ndarray, model_mask: np.ndarray, inside: np.ndarray,
                clicks: Sequence[Click3D], spacing: Sequence[float] = (1.0, 1.0, 1.0),
                params: RefineParams = RefineParams(), claimed: np.ndarray | None = None,
                shared: np.ndarray | None = None, memo: "ClickMemo | None" = None) -> np.ndarray:
    """The refined mask of one crop.

    Args:
        display: the crop of the volume the model sees (float).
        model_mask: the model's mask of the object on the crop (before any click).
        inside: where the object may be (its 3D box); outside is background.
        clicks: every click so far, in order, at voxels of the crop (``zyx``; radius from
            :func:`click_radius`); a click off the crop still fades the prior within it. A click that
            ``yields`` is a background click on a voxel of ``shared`` (``params.negative_yields``).
        spacing: voxel size ``(z, y, x)``; distances are in voxels of the finest spacing.
        claimed: voxels that other objects' clicks put in those objects: the prior there is 0
            (this object's own clicks still decide around them).
        shared: voxels other objects hold; a yielding background click sets the prior to 0 on
            those within its radius, at full weight (the object gives them up to the others).
        memo: what the clicks made of an earlier call on the same crop (:class:`ClickMemo`): only the
            clicks after those are applied, so a long session's click costs its new clicks, not all of them.
    """
    img = display.astype(np.float64)
    model_mask = model_mask.astype(bool)
    shape = model_mask.shape
    if img.shape[:3] != shape:
        raise ValueError(f"display crop {img.shape} does not match the mask crop {shape}")
    p_model = model_prior(model_mask, inside, spacing, params.softness)
    fields = memo.fields(shape, inside, clicks, spacing, params, shared) if memo is not None \
        else ClickFields.of(shape, inside, clicks, spacing, params, shared)
    fg, bg, lam = fields.fg, fields.bg, fields.lam  # the caller's own arrays (a memo keeps copies)
    sample, neg_sample, removed = fields.sample, fields.neg_sample, fields.removed
    zero = fields.zero if claimed is None else fields.zero | claimed.astype(bool)  # prior 0: the voxels go elsewhere
    sample &= inside  # past the box's faces is background: a click by a face must not sample it
    if params.sample_model_mask or not sample.any():
        sample = sample | (model_mask & ~removed)
    prior = p_model
    if params.intensity_mix > 0 and sample.sum() >= 3:
        ratio = intensity_ratio(img, sample, sd_share=params.object_sd_share, bg_sample=neg_sample & ~sample,
                                bg_share=params.negative_sample)
        bayes = p_model * ratio / (p_model * ratio + (1.0 - p_model))
        prior = (1.0 - params.intensity_mix) * p_model + params.intensity_mix * bayes
    prior = np.where(zero, 0.0, prior)
    bg |= ~inside & ~fg
    x = solve_prior_walker(laplacian(img, params.beta), lam, prior, fg, bg)
    return x > 0.5
