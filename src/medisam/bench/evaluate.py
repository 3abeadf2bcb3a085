"""Evaluate one case: every model x prompt strategy x target -> result rows.

A :class:`CaseEvaluator` holds the loaded models (one Predictor each, loaded once per
process or worker) and the parsed strategies. ``evaluate(ref)`` never raises for bad
input: a case that cannot be loaded, or a target a strategy fails on, becomes an error
row instead, so one broken file never stops a benchmark.

Prompts are drawn from a generator seeded by ``(seed, dataset, case, target, strategy)``
(not by the model), so every model sees identical prompts and the result does not depend
on the order or the worker that ran a case.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medisam.bench.datasets import Case, CaseRef, Target, whole_number
from medisam.bench.metrics import DEFAULT_NSD_TOLERANCE_MM, score
from medisam.errors import InputError, MedisamError
from medisam.prompting.strategies import Outcome, Strategy, parse_strategies

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["dataset", "modality", "case", "target", "target_id", "label", "area", "model", "strategy",
                  "click", "seed", "slice", "dsc", "iou", "nsd", "hd95", "score", "time_s", "prompt", "per_class"]
ERROR_COLUMNS = ["dataset", "case", "target_id", "model", "strategy", "seed", "error", "message"]


def prompt_rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator determined by the seed and the names (stable across runs and processes)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(p.encode()) for p in parts])


@dataclass(frozen=True)
class ModelRef:
    """``name`` or ``name@checkpoint`` as given on the command line; ``label`` names the column."""

    name: str
    checkpoint: str | None = None

    @staticmethod
    def parse(text: str) -> "ModelRef":
        name, _, ckpt = text.strip().partition("@")
        return ModelRef(name.strip(), ckpt.strip() or None)

    @property
    def label(self) -> str:
        return self.name if self.checkpoint is None else f"{self.name}@{self.checkpoint}"


@dataclass(frozen=True)
class EvalSettings:
    """Everything a worker needs to build a :class:`CaseEvaluator` (picklable)."""

    models: tuple[str, ...]
    strategies: tuple[str, ...]
    seed: int = 0
    device: str = "cpu"
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    window: Any = None
    surface_metrics: bool = True

    def __post_init__(self) -> None:
        """``seed`` a whole number >= 0 and ``tolerance_mm`` a finite number > 0 (stored as a float), checked
        when the settings are made: seed -1 was numpy's traceback in the first case, a NaN, inf or -1
        tolerance ran every case into an error row."""
        whole_number(self.seed, "seed", 0)
        mm = self.tolerance_mm
        if isinstance(mm, bool) or not isinstance(mm, (int, float)):
            raise InputError(f"tolerance_mm must be a number of mm > 0, got {mm!r}")
        if not math.isfinite(mm) or mm <= 0:
            raise InputError(f"tolerance_mm must be a finite number of mm > 0, got {mm!r}")
        object.__setattr__(self, "tolerance_mm", float(mm))


@dataclass
class CaseResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _error(ref: CaseRef, exc: BaseException, settings: EvalSettings, model: str = "", strategy: str = "",
           target_id: str = "") -> dict[str, Any]:
    message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if not isinstance(exc, MedisamError):  # an unexpected failure: keep the traceback in the log
        log.debug("%s", "".join(traceback.format_exception(exc)))
    log.warning("case %s/%s %s %s %s: %s: %s", ref.dataset, ref.case_id, model, strategy, target_id,
                exc.__class__.__name__, message)
    return {"dataset": ref.dataset, "case": ref.case_id, "target_id": target_id, "model": model,
            "strategy": strategy, "seed": settings.seed, "error": exc.__class__.__name__, "message": message}


def sam2_refusal(strategy: Strategy) -> str | None:
    """Why a SAM 2 model cannot run ``strategy`` (None: it can). It runs the CVPR25 protocol
    (``cvpr25[-box3d][-slice]``: its session, slice clicks); not the everything grid nor the box search
    (they drive a 2D-promptable model's decoder), nor ``cvpr25[-box3d]-ref``."""
    from medisam.bench.cvpr25 import SAM2_REF_REASON
    from medisam.prompting.strategies import EverythingStrategy, ProtocolStrategy

    if isinstance(strategy, EverythingStrategy):
        return "the everything grid drives a 2D-promptable model's decoder"
    if getattr(strategy, "box_search", False):
        return "the box search is for box-trained models; SAM 2 answers points itself"
    if isinstance(strategy, ProtocolStrategy) and strategy.name.endswith("-ref"):
        return SAM2_REF_REASON
    if getattr(strategy, "per_case", False) and not isinstance(strategy, ProtocolStrategy):
        return "a whole-case protocol SAM 2 sessions do not run"
    return None


def sam2_refuses(strategy: Strategy) -> bool:
    """Whether a SAM 2 model cannot run ``strategy`` (:func:`sam2_refusal` says why)."""
    return sam2_refusal(strategy) is not None


def predictor_for(model):  # noqa: ANN001, ANN201 - a LoadedModel -> Predictor or Sam2ImagePredictor
    """The model's 2D predictor (:func:`~medisam.predict.factory.open_predictor`, as ``medisam segment``
    has it), a cache holding every slice of a typical volume (the 3D protocols propagate through it)."""
    from medisam.predict import EmbeddingCache
    from medisam.predict.factory import open_predictor

    return open_predictor(model, EmbeddingCache(max_bytes=1 << 30))


class CaseEvaluator:
    """Models and strategies loaded once; :meth:`evaluate` runs one case."""

    def __init__(self, settings: EvalSettings, models: dict[str, Any] | None = None):
        from medisam.models import load_model

        self.settings = settings
        self.strategies: list[Strategy] = parse_strategies(list(settings.strategies))
        self.predictors: dict[str, Any] = {}
        for text in settings.models:
            ref = ModelRef.parse(text)
            model = (models or {}).get(ref.label) or load_model(ref.name, checkpoint=ref.checkpoint,
                                                                  device=settings.device)
            self.predictors[ref.label] = predictor_for(model)

    def evaluate(self, ref: CaseRef, skip: set[tuple[str, str]] = frozenset()) -> CaseResult:
        """Rows for every (model, strategy) of ``ref`` not in ``skip``; problems -> error rows."""
        out = CaseResult()
        todo = [(m, s) for m in self.predictors for s in self.strategies if (m, s.name) not in skip]
        if not todo:
            return out
        try:
            case = ref.load()
        except Exception as exc:  # noqa: BLE001 - any unreadable case is reported, never fatal
            out.errors.append(_error(ref, exc, self.settings))
            return out
        for model_label, predictor in self.predictors.items():
            strategies = [s for m, s in todo if m == model_label]
            if strategies:
                self._evaluate_model(case, ref, model_label, predictor, strategies, out)
        return out

    # ------------------------------------------------------------------ internals
    def _evaluate_model(self, case: Case, ref: CaseRef, model_label: str, predictor, strategies: list[Strategy],
                        out: CaseResult) -> None:
        s = self.settings
        volume = case.image.is_volume
        display = None
        try:
            if volume:
                from medisam.predict.volume import volume_to_display

                display = volume_to_display(case.image.array, case.image.modality, s.window)
            else:
                predictor.set_image(case.image, window=s.window)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(_error(ref, exc, s, model_label))
            return
        for strategy in strategies:
            if strategy.dims == 3 and not volume:  # volume protocols do not apply to 2D images
                log.debug("%s does not apply to 2D case %s", strategy.name, case.case_id)
                continue
            if getattr(strategy, "per_case", False):  # whole-case protocols (bench/cvpr25.py)
                self._run_case(case, ref, model_label, predictor, strategy, out)
                continue
            for target in case.targets:
                rng = prompt_rng(s.seed, case.dataset, case.case_id, target.id, strategy.name)
                try:
                    t0 = time.perf_counter()
                    slice_index, truth, spacing, outcomes = self._run(strategy, predictor, case, target, display,
                                                                      rng)
                    elapsed = time.perf_counter() - t0
                    for o in outcomes:
                        out.rows.append(self._row(case, target, model_label, strategy, o, slice_index, truth,
                                                  spacing, elapsed))
                except Exception as exc:  # noqa: BLE001
                    out.errors.append(_error(ref, exc, s, model_label, strategy.name, target.id))

    def _run_case(self, case: Case, ref: CaseRef, model_label: str, predictor, strategy: Strategy,
                  out: CaseResult) -> None:
        from medisam.bench import cvpr25

        s = self.settings
        try:
            rows = cvpr25.evaluate_case(case, predictor, strategy.name, s.window)  # NSD at the protocol's 2 mm
        except Exception as exc:  # noqa: BLE001
            out.errors.append(_error(ref, exc, s, model_label, strategy.name, "all"))
            return
        for row in rows:  # a row may name its variant (its "strategy" wins)
            out.rows.append({"dataset": case.dataset, "modality": case.modality, "case": case.case_id,
                             "model": model_label, "strategy": strategy.name, "seed": s.seed, "slice": "", **row})

    def _run(self, strategy: Strategy, predictor, case: Case, target: Target, display, rng):
        image = case.image
        mask = target.mask  # whole-grid, for this target only (a case keeps its targets' boxes)
        if strategy.dims == 3:
            if not image.is_volume:
                raise MedisamError(f"strategy {strategy.name} needs a 3D volume; {case.case_id} is 2D")
            outcomes = strategy.run_volume(predictor, image, mask, rng, window=self.settings.window)
            return None, mask, image.spacing, outcomes
        if image.is_volume:  # 2D strategies on a volume: the target's key slice
            from medisam.prompting.volume import key_slice

            k = key_slice(mask)
            plane = np.repeat(display[k][..., None], 3, axis=-1).astype(np.float32)
            predictor.set_display_image(np.ascontiguousarray(plane))
            truth = mask[k]
            strategy.prepare(predictor)
            return k, truth, image.spacing[:2], strategy.run(predictor, truth, rng)
        strategy.prepare(predictor)
        return None, mask, image.spacing, strategy.run(predictor, mask, rng)

    def _row(self, case: Case, target: Target, model_label: str, strategy: Strategy, o: Outcome,
             slice_index: int | None, truth: np.ndarray, spacing, elapsed: float) -> dict[str, Any]:
        m = score(o.mask, truth, spacing, self.settings.tolerance_mm, surface=self.settings.surface_metrics)
        return {"dataset": case.dataset, "modality": case.modality, "case": case.case_id, "target": target.name,
                "target_id": target.id, "label": target.label, "area": target.area, "model": model_label,
                "strategy": strategy.name, "click": "" if o.click is None else o.click, "seed": self.settings.seed,
                "slice": "" if slice_index is None else slice_index, "dsc": m.dsc, "iou": m.iou, "nsd": m.nsd,
                "hd95": m.hd95, "score": o.score, "time_s": round(elapsed, 4),
                "prompt": json.dumps(o.prompt, separators=(",", ":"))}
