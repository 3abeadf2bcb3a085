"""Corrective clicks on a 2D image: the 3D clicks' random walker on a one-slice volume.

LiteMedSAM was trained with box prompts only, so its point prompts do not correct a box's
mask: the bench's ``box-clicks5`` (the tight box, then 5 correction clicks as point prompts
with the previous logits as mask prompt) ends lower than the box alone on every 2D set
measured. Here a click refines the object's mask with the random walker with a prior of
:mod:`medisam.predict.click_refine` (the model's mask and an intensity model as the prior, the
clicks as seeds, each click deciding within its radius), on a crop around the object's box,
its masks and its clicks. No encoder or decoder runs. A positive click only adds to the mask
and a negative one only removes, so a click never undoes good boundary elsewhere.

A 2D image is a volume of one slice: the 6-connected grid becomes the 4-connected one, and a
positive click's reach is capped by the radius of a disk of the object's area (the 3D cap
uses a ball of its volume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from medisam.errors import PromptError
from medisam.predict.click_layer import crop_of, window_around
from medisam.predict.click_refine import RefineParams, apply_clicks, click_radii, refine_crop, stroke_radii
from medisam.predict.store import Click3D

SPACING = (1.0, 1.0, 1.0)
#: the 3D clicks' weights, but a positive click samples the object's intensity on the model's
#: mask as well as around the click: with the click's small disk alone the first click often
#: cut the mask elsewhere (Kvasir 0.897 -> 0.816 at the first click; docs/benchmark.md)
#: A positive click only adds: re-solving the crop cut good boundary elsewhere (Kvasir's first
#: click 0.897 -> 0.882 on average; only adding: 0.898; docs/benchmark.md)
#: The object's Gaussian has no floor from the rest's spread (``object_sd_share``, stop 51): measured in 3D
#: only, and the 2D sample already holds the model's mask
#: The background clicks' intensity joins the model of "not the object" as in 3D (``negative_sample``, stop 58):
#: every target of the eleven 2D sets but the nuclei, 0.902 after 5 clicks with it or without (docs/benchmark.md)
#: A scribble's click acts up to 6 times its gap to the next (``stroke_cap`` 4 x ``click_scale``, stop 64): three
#: scribbles on every object of the eleven 2D sets, mean of the sets 0.865 with cap 1, 0.870 with 4, 0.868
#: uncapped (DRIVE 0.226, 0.236, 0.207; docs/clients.md, "How far a scribble's clicks reach")
PARAMS_2D = RefineParams(sample_model_mask=True, positive_only_adds=True, object_sd_share=0.0, stroke_cap=4.0)


@dataclass(frozen=True)
class Click2D:
    """A corrective click at pixel ``(y, x)``; ``radius``: how far it acts (pixels), measured
    against the mask it corrected when it was made (:func:`click_reach`)."""

    y: int
    x: int
    positive: bool
    radius: float


def click_reach(current: np.ndarray, y: int, x: int, positive: bool, params: RefineParams = PARAMS_2D) -> float:
    """The radius of a click at ``(y, x)`` on ``current``: ``click_scale`` times its distance to
    the mask's boundary, at least ``min_radius``; a positive click's at most ``size_scale`` times
    the radius of a disk of the mask's area."""
    return click_reaches(current, [(y, x)], positive, params)[0]


def click_reaches(current: np.ndarray, pixels: Sequence[tuple[int, int]], positive: bool,
                  params: RefineParams = PARAMS_2D) -> list[float]:
    """:func:`click_reach` of several clicks of one sign at ``(y, x)`` pixels, with one distance transform."""
    radii = click_radii(current[None], [(0, y, x) for y, x in pixels], positive, SPACING,
                        replace(params, size_scale=None))
    if positive and params.size_scale is not None:
        cap = max(params.min_radius, params.size_scale * math.sqrt(float(current.sum()) / math.pi))
        radii = [min(r, cap) for r in radii]
    return radii


def _walker_image(display: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` display -> the walker's channels (one for a grey image shown as RGB)."""
    img = np.asarray(display, dtype=np.float64)
    if img.ndim == 3 and all(np.array_equal(img[..., 0], img[..., k]) for k in range(1, img.shape[2])):
        return img[..., 0]
    return img


def _crop(shape: tuple[int, int], parts: Sequence[np.ndarray], points: Sequence[tuple[int, int]], pad: int,
          max_pixels: int, around: tuple[int, int]) -> tuple[slice, slice]:
    """The bounding box of the masks ``parts`` and ``points`` grown by ``pad``, cut as the 3D
    clicks cut theirs (:func:`~medisam.predict.click_layer.window_around`) to the largest square
    of at most ``max_pixels`` around ``around`` (the newest click) when larger."""
    corners = [(0, y, x) for y, x in points]
    for part in parts:
        rows, cols = np.nonzero(part.any(axis=1))[0], np.nonzero(part.any(axis=0))[0]
        if rows.size:
            corners += [(0, int(rows[0]), int(cols[0])), (0, int(rows[-1]), int(cols[-1]))]
    crop = crop_of(corners, (1, *shape), pad)
    _, rows_slice, cols_slice = window_around(crop, (0, *around), SPACING, max_pixels)
    return rows_slice, cols_slice


def refine_2d(display: np.ndarray, model_mask: np.ndarray, current: np.ndarray, box: Sequence[float] | None,
              clicks: Sequence[Click2D], params: RefineParams = PARAMS_2D, new: int = 1) -> np.ndarray:
    """The object's mask after ``clicks`` (every click so far, in order; the last ``new`` are the new
    ones, of one sign, solved together: a scribble's).

    ``display``: the image the model saw (``(H, W)`` or ``(H, W, C)``, any scale);
    ``model_mask``: the model's mask before any click (the prior); ``current``: the mask before
    the new clicks (kept outside the walker's crop); ``box``: the object's XYXY box, outside
    which only positive clicks may add (None: the masks' extent). A negative click only removes
    from ``current``; a positive one only adds where ``params.positive_only_adds`` (PARAMS_2D), else it
    takes the re-solve within ``params.positive_reach`` radii of it (:func:`.click_refine.apply_click`).
    Returns a new ``(H, W)`` bool mask.
    """
    shape = tuple(model_mask.shape)
    if not clicks:
        raise PromptError("refine_2d needs at least one click")
    if tuple(np.shape(display)[:2]) != shape or tuple(current.shape) != shape:
        raise PromptError(f"display {np.shape(display)[:2]}, model mask {shape} and current mask "
                          f"{current.shape} must be the same size")
    for c in clicks:
        if not (0 <= c.y < shape[0] and 0 <= c.x < shape[1]):
            raise PromptError(f"click ({c.x}, {c.y}) lies outside the {shape[1]}x{shape[0]} image")
    inside = np.zeros(shape, bool)
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        inside[max(0, y0 - params.pad):max(0, y1 + params.pad), max(0, x0 - params.pad):max(0, x1 + params.pad)] = True
    else:
        inside |= model_mask | current
    for c in clicks:  # a positive click outside the box brings its neighbourhood in
        if c.positive:
            r = int(math.ceil(params.seed_radius))
            inside[max(0, c.y - r):c.y + r + 1, max(0, c.x - r):c.x + r + 1] = True
    if not 1 <= new <= len(clicks):
        raise PromptError(f"refine_2d: {new} new clicks of {len(clicks)}")
    middle = clicks[len(clicks) - new + new // 2]
    rows, cols = _crop(shape, [inside, model_mask, current], [(c.y, c.x) for c in clicks], params.pad,
                       params.max_voxels, (middle.y, middle.x))
    image = _walker_image(display)[rows, cols]
    walker_clicks = [Click3D((0, c.y - rows.start, c.x - cols.start), c.positive, c.radius) for c in clicks]
    refined = refine_crop(image[None], model_mask[rows, cols][None], inside[rows, cols][None], walker_clicks,
                          SPACING, params)
    out = current.copy()
    out[rows, cols] = apply_clicks(refined, current[rows, cols][None], walker_clicks[-new:], params, SPACING)[0]
    return out


def correct_2d(display: np.ndarray, model_mask: np.ndarray, current: np.ndarray, box: Sequence[float] | None,
               clicks: Sequence[Click2D], pixels: Sequence[tuple[int, int]], positive: bool,
               params: RefineParams = PARAMS_2D) -> tuple[np.ndarray, tuple[Click2D, ...], int] | None:
    """More corrective clicks of one sign at ``(y, x)`` ``pixels`` after ``clicks`` (one, or a scribble's),
    solved together: the new mask, every click with the new ones it honours, and how many it does not
    honour (those are not kept); None when it honours none of them (nothing changes). The step of a 2D
    session's clicks and scribbles and of ``medisam segment --scribble`` on a box's or a lasso's mask
    (the arguments as :func:`refine_2d`'s). Why together: one walker solve per scribble, not per click;
    each click's radius is at most ``click_scale`` times its gap to the nearest other (``params.stroke_cap``)."""
    if not len(pixels):
        raise PromptError("give at least one click")
    radii = stroke_radii(click_reaches(current, pixels, bool(positive), params), [(0, y, x) for y, x in pixels],
                         SPACING, params)  # measured before them all, each at most ~ its gap to the next
    todo = tuple(Click2D(int(y), int(x), bool(positive), r) for (y, x), r in zip(pixels, radii))
    new = refine_2d(display, model_mask, current, box, (*clicks, *todo), params, new=len(todo))
    honoured = tuple(c for c in todo if bool(new[c.y, c.x]) == bool(positive))
    if not honoured:
        return None
    return new, (*clicks, *honoured), len(todo) - len(honoured)
