"""Prompt strategies: how a simulated user prompts a model for one ground-truth object.

A strategy is parsed from a short name (``parse_strategy("box-jitter10")``) and used two ways:

* ``simulate(truth, rng) -> PromptSet``: model-free prompts from a 2D mask, for training
  (box, jittered box, centre point, random positive/negative points);
* ``run(predictor, truth, rng) -> list[Outcome]``: segment the object on the predictor's
  current image (``set_image`` first), for the benchmark. Interactive strategies
  (``clicksN``) return one outcome per click; the others one outcome.

Volume protocols (``box3d``, ``keyslice``; ``dims == 3``) instead implement
``run_volume(model, image, truth, rng)`` (see :mod:`medisam.prompting.volume`).

Names (case-insensitive):

=================  ==========================================================================
``box``            tight box around the object
``box-jitterP``    each box edge moved by up to P % of the box width/height (uniform)
``point``          one positive point at the interior-most pixel (distance transform)
``pointsK``        K positive points drawn uniformly inside the object
``pointsKnegM``    K positive points inside + M negative points in the background near it
``point-box``      ``point`` (or ``pointsK[negM]-box``) answered as medisam answers a points-only
                   prompt for a box-trained model: a box searched around the points
                   (:mod:`medisam.predict.point_box`); without ``-box`` the model's own point
                   prompt, as the published evaluations ask it
``clicksN``        centre point, then up to N-1 correction clicks (Dice versus clicks)
``box-clicksN``    tight box, then N correction clicks on top of it (click 0 = box only)
``box-walkerN``    the same clicks, each refining the mask with the random walker (medisam's 2D
                   corrective clicks, :mod:`medisam.predict.refine2d`) instead of point prompts
``everything``     automatic grid of prompts (``everythingS``: density S, default 16) -> best
                   mask; points (S x S) for SAM, boxes (tiles down to 2/S of the side) for
                   box-trained models such as LiteMedSAM; ``-points`` / ``-boxes`` choose;
                   ``-single`` decodes one mask per point instead of three; ``-iouT`` / ``-stabT``
                   set the predicted-IoU / stability filters (default 0.88 / 0.95 with points,
                   SAM's; 0.8 / 0.7 with boxes); ``-cropsN`` also runs the grid on N layers of
                   zoomed crops (small objects; 1 + 4 + ... encodings, N <= 3)
``box3d``          3D bounding box -> key-slice box propagated through the volume
``keyslice``       tight 2D box on the slice of largest area, propagated through the volume
``recist``         a RECIST line (longest diameter on the slice of largest area) -> the
                   lesion's 3D box, as the clients turn a drawn line into one, then propagated
``cvpr25``         CVPR 2025 interactive-3D protocol, all classes of a case: 2D box + z range,
                   then 5 corrective 3D clicks (``-box3d``: start from the 3D extent instead;
                   ``-slice``: the slice clicks of before as clicks; ``-ref``: both from one start)
=================  ==========================================================================

All randomness comes from the explicit ``rng`` (``numpy.random.Generator``), so the same
seed gives the same prompts. Coordinates follow :mod:`medisam.prompts` (XY pixels).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from medisam.errors import PromptError
from medisam.prompting import sampling
from medisam.prompts import Box, MaskPrompt, Points


@dataclass(frozen=True)
class PromptSet:
    """The prompts given for one object: an optional box and optional points (XY pixels)."""

    box: Box | None = None
    points: Points | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (for logs and result tables)."""
        out: dict[str, Any] = {}
        if self.box is not None:
            out["box"] = [round(float(v), 2) for v in self.box.as_array()]
        if self.points is not None:
            out["points"] = [[int(x), int(y), int(lab)] for (x, y), lab
                             in zip(self.points.coords.tolist(), self.points.labels.tolist())]
        return out


@dataclass(frozen=True)
class Outcome:
    """One predicted mask for one object.

    ``mask``: bool on the grid of ``truth`` (``(H, W)``, or ``(Z, Y, X)`` for volume
    protocols); ``score``: the model's predicted IoU (NaN when not defined); ``click``:
    number of clicks so far for interactive strategies, else None; ``prompt``: what was given.
    """

    mask: np.ndarray
    score: float
    click: int | None = None
    prompt: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class; ``name`` is the canonical string that :func:`parse_strategy` reads back."""

    name: str = ""
    dims: int = 2          # 2: one 2D image or slice; 3: a volume protocol
    interactive: bool = False

    def __repr__(self) -> str:
        return f"<Strategy {self.name}>"

    @property
    def row_names(self) -> tuple[str, ...]:
        """The strategy names its result rows carry (what ``medisam bench --resume`` looks for)."""
        return (self.name,)

    def simulate(self, truth: np.ndarray, rng: np.random.Generator) -> PromptSet:
        """Model-free prompts for the 2D mask ``truth``."""
        raise PromptError(f"strategy {self.name!r} needs the model in the loop; it has no fixed prompt")

    def prepare(self, predictor) -> None:  # noqa: B027 - optional hook
        """Per-image work shared by all objects of the current image (default: none)."""

    @abstractmethod
    def run(self, predictor, truth: np.ndarray, rng: np.random.Generator) -> list[Outcome]:
        """Segment the object ``truth`` (2D bool) on ``predictor``'s current image."""


def _best(pred) -> tuple[np.ndarray, float, np.ndarray]:
    """(mask, score, low-res logits) of the highest-scoring mask of a Prediction."""
    i = int(np.argmax(pred.scores))
    return pred.masks[i], float(pred.scores[i]), pred.low_res_logits[i]


class BoxStrategy(Strategy):
    """Tight box, optionally jittered by ``jitter`` (fraction of the box size)."""

    def __init__(self, jitter: float = 0.0):
        if jitter < 0:
            raise PromptError(f"box jitter must be >= 0, got {jitter}")
        self.jitter = float(jitter)
        pct = jitter * 100
        self.name = "box" if jitter == 0 else f"box-jitter{pct:g}"

    def simulate(self, truth: np.ndarray, rng: np.random.Generator) -> PromptSet:
        box = sampling.tight_box(truth)
        h, w = np.asarray(truth).shape
        return PromptSet(box=sampling.jitter_box(box, self.jitter, rng, h, w))

    def run(self, predictor, truth, rng):
        prompt = self.simulate(truth, rng)
        # predict_batch is what medisam.predict.segment.segment_image uses for boxes, so the
        # benchmark's box masks are exactly those of `medisam segment --box`.
        pred = predictor.predict_batch([prompt.box])
        return [Outcome(pred.masks[0], float(pred.scores[0]), None, prompt.describe())]


class PointsStrategy(Strategy):
    """Positive (and negative) points: the centre point, or ``n_pos`` random + ``n_neg`` negatives.

    A single point is ambiguous, so (as SAM recommends) it is decoded with three
    multimask outputs and the one with the highest predicted IoU is kept. ``box_search``:
    the points go to the box search of :mod:`medisam.predict.point_box` (what every surface
    does with a points-only prompt to a box-trained model) instead of the model's point prompt.
    """

    def __init__(self, n_pos: int = 1, n_neg: int = 0, center: bool = False, box_search: bool = False):
        if n_pos < 1 or n_neg < 0:
            raise PromptError(f"points strategy needs >= 1 positive and >= 0 negative points, got {n_pos}, {n_neg}")
        self.n_pos, self.n_neg, self.center = int(n_pos), int(n_neg), bool(center)
        self.box_search = bool(box_search)
        if center:
            self.name = "point"
        else:
            self.name = f"points{n_pos}" + (f"neg{n_neg}" if n_neg else "")
        self.name += "-box" if box_search else ""

    def simulate(self, truth, rng):
        if self.center:
            x, y = sampling.interior_point(truth)
            return PromptSet(points=Points(np.array([[x, y]]), np.array([1])))
        return PromptSet(points=sampling.sample_points(truth, self.n_pos, self.n_neg, rng))

    def run(self, predictor, truth, rng):
        prompt = self.simulate(truth, rng)
        multimask = len(prompt.points.labels) == 1 and not self.box_search
        mask, score, _ = _best(predictor.predict(points=prompt.points, multimask=multimask, box_search=self.box_search))
        return [Outcome(mask, score, None, prompt.describe())]


class ClicksStrategy(Strategy):
    """Iterative correction clicks (RITM / SAM interactive protocol).

    Start from the centre point (click 1; multimask, best score) or from the tight box
    (click 0). Each further click goes to the interior-most pixel of the largest error
    region (:func:`sampling.correction_click`): positive on a miss, negative on a false
    positive; all clicks so far plus the previous low-res logits (as mask prompt) are
    given. When the prediction is already perfect the last mask is repeated.
    """

    interactive = True

    def __init__(self, n_clicks: int, start: str = "point"):
        if n_clicks < 1:
            raise PromptError(f"clicks strategy needs >= 1 click, got {n_clicks}")
        if start not in ("point", "box"):
            raise PromptError(f"clicks start must be 'point' or 'box', got {start!r}")
        self.n_clicks, self.start = int(n_clicks), start
        self.name = f"clicks{n_clicks}" if start == "point" else f"box-clicks{n_clicks}"

    def run(self, predictor, truth, rng):
        from medisam.models.upscale_window import exact_logits  # here: the prompting package stays torch-free

        # each click passes the previous prediction's low-res logits back as the mask prompt:
        # they must be the model's on the whole grid, not only in the box's window
        with exact_logits():
            return self._run(predictor, truth)

    def _run(self, predictor, truth) -> list[Outcome]:  # noqa: ANN001 - a Predictor
        truth = np.asarray(truth, dtype=bool)
        box: Box | None = None
        clicks: list[tuple[int, int, int]] = []
        if self.start == "box":
            box = sampling.tight_box(truth)
            mask, score, logits = _best(predictor.predict(box=box))
            start = Outcome(mask, score, 0, PromptSet(box=box).describe())
        else:
            x, y = sampling.interior_point(truth)
            clicks.append((x, y, 1))
            points = Points.of(clicks)
            mask, score, logits = _best(predictor.predict(points=points, multimask=True, box_search=False))
            start = Outcome(mask, score, 1, PromptSet(points=points).describe())

        def apply(click: tuple[int, int, int], _mask: np.ndarray) -> tuple[np.ndarray, float, dict]:
            nonlocal logits
            clicks.append(click)
            points = Points.of(clicks)
            mask, score, logits = _best(predictor.predict(box=box, points=points, mask=MaskPrompt(logits)))
            return mask, score, PromptSet(box=box, points=points).describe()

        return _correction_steps(truth, start, self.n_clicks, apply)


class WalkerClicksStrategy(Strategy):
    """The tight box (click 0), then N correction clicks placed as in ``box-clicksN``, each
    refining the mask with the random walker around the model's box mask
    (:func:`medisam.predict.refine2d.refine_2d`) instead of going to the model as a point
    prompt: LiteMedSAM was trained with boxes only (``docs/benchmark.md``)."""

    interactive = True

    def __init__(self, n_clicks: int, params: Any = None):
        if n_clicks < 1:
            raise PromptError(f"box-walker strategy needs >= 1 click, got {n_clicks}")
        self.n_clicks = int(n_clicks)
        self.params = params  # a click_refine.RefineParams (None: refine2d.PARAMS_2D)
        self.name = f"box-walker{n_clicks}"

    def run(self, predictor, truth, rng):
        from medisam.predict.refine2d import PARAMS_2D, Click2D, click_reach, refine_2d

        params = PARAMS_2D if self.params is None else self.params
        truth = np.asarray(truth, dtype=bool)
        box = sampling.tight_box(truth)
        pred = predictor.predict(box=box)
        model_mask, score = pred.masks[0], float(pred.scores[0])
        clicks: list[Click2D] = []

        def apply(click: tuple[int, int, int], mask: np.ndarray) -> tuple[np.ndarray, float, dict]:
            x, y, label = click
            clicks.append(Click2D(y, x, bool(label), click_reach(mask, y, x, bool(label), params)))
            mask = refine_2d(predictor.display_image, model_mask, mask, box.as_array(), clicks, params)
            points = Points.of([(c.x, c.y, int(c.positive)) for c in clicks])
            return mask, score, PromptSet(box=box, points=points).describe()

        return _correction_steps(truth, Outcome(model_mask, score, 0, PromptSet(box=box).describe()),
                                 self.n_clicks, apply)


def _correction_steps(truth: np.ndarray, start: Outcome, n_clicks: int,
                      apply: Callable[[tuple[int, int, int], np.ndarray], tuple[np.ndarray, float, dict]]
                      ) -> list[Outcome]:
    """The outcomes of the correction clicks after ``start`` up to click ``n_clicks``: each click
    goes to the interior-most pixel of the current mask's largest error
    (:func:`sampling.correction_click`, ``(x, y, label)``) and ``apply(click, mask)`` gives the new
    ``(mask, score, prompt)``; when the mask is already perfect the last outcome is repeated."""
    outcomes = [start]
    mask, score = start.mask, start.score
    first = (start.click or 0) + 1
    for click in range(first, n_clicks + 1):
        nxt = sampling.correction_click(mask, truth)
        if nxt is None:  # perfect already: nothing to correct
            outcomes.append(Outcome(mask, score, click, outcomes[-1].prompt))
            continue
        mask, score, prompt = apply(nxt, mask)
        outcomes.append(Outcome(mask, score, click, prompt))
    return outcomes


class EverythingStrategy(Strategy):
    """Automatic mask generation on a grid of prompts, then the best-matching mask per object
    (the COSMOS SAM evaluation). Masks are generated once per image in :meth:`prepare`."""

    def __init__(self, points_per_side: int = 16, **config: Any):
        from medisam.prompting.automatic import AutoMaskConfig

        self.config = AutoMaskConfig(points_per_side=points_per_side, **config)
        self.name = "everything" if points_per_side == 16 else f"everything{points_per_side}"
        if not self.config.multimask:
            self.name += "-single"
        if self.config.grid != "auto":
            self.name += f"-{self.config.grid}"
        if self.config.crop_layers:
            self.name += f"-crops{self.config.crop_layers}"
        if self.config.pred_iou_thresh is not None:
            self.name += f"-iou{self.config.pred_iou_thresh:g}"
        if self.config.stability_score_thresh is not None:
            self.name += f"-stab{self.config.stability_score_thresh:g}"
        self._key: Any = None
        self._masks = None
        self._areas = None

    def prepare(self, predictor) -> None:
        from medisam.prompting.automatic import generate_masks, mask_areas

        key = predictor.get_image_embedding()  # the cached tensor identifies the image
        if key is not self._key or self._masks is None:
            self._masks = generate_masks(predictor, self.config)
            self._areas = mask_areas(self._masks)
            self._key = key

    def run(self, predictor, truth, rng):
        from medisam.prompting.automatic import best_match

        self.prepare(predictor)
        mask, score = best_match(self._masks, truth, self._areas)
        prompt = {"candidates": len(self._masks), "grid": self._masks.grid}
        if self.config.crop_layers:  # the cost grew: one encoding per crop
            from medisam.prompting.crops import encodings

            prompt["encodings"] = encodings(self.config.crop_layers)
        return [Outcome(mask, score, None, prompt)]


_PATTERNS: list[tuple[str, Any]] = [
    (r"box", lambda m: BoxStrategy()),
    (r"box-jitter(\d+(?:\.\d+)?)", lambda m: BoxStrategy(float(m[1]) / 100)),
    (r"(?:point|center|centre)(-box)?", lambda m: PointsStrategy(center=True, box_search=bool(m[1]))),
    (r"points(\d+)(-box)?", lambda m: PointsStrategy(int(m[1]), box_search=bool(m[2]))),
    (r"points(\d+)neg(\d+)(-box)?", lambda m: PointsStrategy(int(m[1]), int(m[2]), box_search=bool(m[3]))),
    (r"clicks(\d+)", lambda m: ClicksStrategy(int(m[1]))),
    (r"box-clicks(\d+)", lambda m: ClicksStrategy(int(m[1]), start="box")),
    (r"box-walker(\d+)", lambda m: WalkerClicksStrategy(int(m[1]))),
    (r"everything(\d+)?(-single)?(?:-(points|boxes))?(?:-crops(\d+))?(?:-iou(\d*\.?\d+))?(?:-stab(\d*\.?\d+))?",
     lambda m: EverythingStrategy(
        int(m[1]) if m[1] else 16,
        **({"multimask": False} if m[2] else {}),
        **({"grid": m[3]} if m[3] else {}),
        **({"crop_layers": int(m[4])} if m[4] else {}),
        **({"pred_iou_thresh": float(m[5])} if m[5] else {}),
        **({"stability_score_thresh": float(m[6])} if m[6] else {}))),
    (r"box3d", lambda m: _volume_strategy("box3d")),
    (r"keyslice", lambda m: _volume_strategy("keyslice")),
    (r"recist", lambda m: _volume_strategy("recist")),
    (r"cvpr25(-box3d)?(-slice|-ref)?", lambda m: ProtocolStrategy(m[0])),
]

STRATEGY_NAMES = ("box", "box-jitterP", "point", "pointsK", "pointsKnegM", "point[sK[negM]]-box", "clicksN",
                  "box-clicksN", "box-walkerN",
                  "everything[S][-single][-points|-boxes][-cropsN][-iouT][-stabT]",
                  "box3d", "keyslice", "recist", "cvpr25",
                  "cvpr25-box3d", "cvpr25[-box3d]-slice", "cvpr25[-box3d]-ref")


class ProtocolStrategy(Strategy):
    """A whole-case protocol (all classes at once), run by the benchmark itself
    (:mod:`medisam.bench.cvpr25`): ``cvpr25`` and ``cvpr25-box3d``."""

    dims = 3
    interactive = True
    per_case = True

    def __init__(self, name: str):
        self.name = name

    @property
    def row_names(self) -> tuple[str, ...]:
        """``...-ref`` writes two sets of rows from one start: its clicks and the reference's (``...-slice``)."""
        if self.name.endswith("-ref"):
            base = self.name.removesuffix("-ref")
            return base, f"{base}-slice"
        return (self.name,)

    def run(self, predictor, truth, rng):
        raise PromptError(f"strategy {self.name!r} runs on a whole case: use medisam bench")


def _volume_strategy(name: str) -> Strategy:
    from medisam.prompting import volume

    return volume.VOLUME_STRATEGIES[name]()


def parse_strategy(text: str) -> Strategy:
    """A strategy from its name (see the module docstring); one-line PromptError if unknown."""
    key = text.strip().lower()
    for pattern, build in _PATTERNS:
        m = re.fullmatch(pattern, key)
        if m:
            return build(m)
    raise PromptError(f"unknown prompt strategy {text!r}; known: {', '.join(STRATEGY_NAMES)}")


def parse_strategies(text: str | list[str]) -> list[Strategy]:
    """Comma-separated names (or a list) -> strategies, duplicates removed, order kept."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: dict[str, Strategy] = {}
    for name in names:
        if name.strip():
            s = parse_strategy(name)
            out.setdefault(s.name, s)
    if not out:
        raise PromptError("no prompt strategy given")
    return list(out.values())
