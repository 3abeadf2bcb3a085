"""One-off calibration of ``backend="auto"``: time the candidate backends on this machine and
keep the fastest whose masks pass the Dice guard against torch fp32."""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import numpy as np
import torch

from medisam.models.promptable import PromptableModel
from medisam.models.runtime import backend_available, progress, supported_precisions
from medisam.models.speed_profile import profile_path, write_speed_profile

log = logging.getLogger(__name__)

#: ``(base model, backend, precision, device, threads) -> model on that backend``.
MakeBackend = Callable[[PromptableModel, str, str, torch.device, int], PromptableModel]


def sample_cases() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]]:
    """(display image, ground-truth mask, tight box) of the bundled CT samples."""
    from medisam.io import read_image
    from medisam.io.intensity import to_display
    from medisam.prompts import Box
    from medisam.samples import sample_pairs

    cases = []
    for _, image_path, mask_path in sample_pairs():
        image = read_image(image_path, modality="CT")
        truth = np.asarray(read_image(mask_path).array) > 0
        truth = truth[..., 0] if truth.ndim == 3 else truth
        box = Box.from_mask(truth, margin=0)
        cases.append((to_display(image.array, image.modality, None), truth, tuple(box.as_array().tolist())))
    return cases


def calibration_candidates(device: torch.device) -> list[tuple[str, str]]:
    """(backend, precision) pairs :func:`calibrate` measures: installed runtimes, the
    precisions this CPU runs natively (no int8: it needs the wider guard of the benchmark)."""
    pairs = [("openvino", "bf16"), ("openvino", "fp32"), ("onnx", "fp32")]
    return [(b, p) for b, p in pairs if backend_available(b) and p in supported_precisions(b, device)]


def box_mask(model: PromptableModel, display: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """``(H, W)`` bool mask of one box prompt, computed as ``Predictor.predict(box=...)`` does
    (the model layer cannot use the predictor, which sits above it)."""
    tensor, transform = model.preprocess(display)
    scaled = transform.coords_to_model(np.asarray([box], dtype=np.float32))
    boxes = torch.from_numpy(np.floor(scaled) if model.spec.integer_boxes else scaled).to(model.device)
    out = model.decode(model.encode(tensor), boxes=boxes, multimask=False)
    return transform.masks_to_original(out.low_res_logits[:, 0].detach().float().cpu().numpy())[0]


def calibrate(base: PromptableModel, threads: int, make_backend: MakeBackend, repeats: int = 3,
              ) -> tuple[dict, PromptableModel]:
    """Measure the candidates on this machine and store the fastest guard-passing one.

    One-off (the result goes to ``<cache>/speed_profile.json``, which
    ``benchmarks/speed.py --save-profile`` replaces with its fuller measurement): every
    candidate segments the bundled CT samples from their ground-truth boxes, its mean Dice
    must stay within the guard of torch fp32's
    (:func:`~medisam.models.precision.precision_guard`), and the encoder's fastest of
    ``repeats`` runs picks among those that pass (every candidate is timed: the profile
    records what a refused one would have cost). The runs are interleaved (one encoding of
    every candidate per round) and the minimum is kept, so that other work on a busy machine,
    which comes and goes, does not decide the choice. Returns the profile written and the
    chosen model (already compiled). ``make_backend`` puts ``base`` on a backend
    (:func:`medisam.models.backends.make_backend`; torch fp32 is the reference).
    """
    from medisam.metrics_basic import dice
    from medisam.models.precision import precision_guard

    cases = sample_cases()
    cpu = torch.device("cpu")
    t_start = time.perf_counter()
    load = machine_load()
    progress(f"calibrating backend 'auto' for this machine (one-off, result in {profile_path()})")

    def scores_of(model: PromptableModel) -> list[float]:  # also the warm-up of every runtime
        return [dice(box_mask(model, img, box), gt) for img, gt, box in cases]

    torch_model = make_backend(base, "torch", "fp32", cpu, threads)
    base_scores = scores_of(torch_model)
    models: dict[tuple[str, str], PromptableModel] = {("torch", "fp32"): torch_model}
    accepted = {("torch", "fp32")}
    measured: dict[str, dict] = {"torch-fp32": {"dice_delta": 0.0, "accepted": True}}
    for backend, precision in calibration_candidates(cpu):
        try:
            model = make_backend(base, backend, precision, cpu, threads)
            guard = precision_guard(precision, base_scores, scores_of(model))
        except Exception as exc:  # a runtime that fails here is simply not chosen
            log.warning("calibration: %s %s failed (%s)", backend, precision, exc)
            continue
        measured[f"{backend}-{precision}"] = {"dice_delta": guard.delta, "accepted": guard.accepted}
        models[(backend, precision)] = model  # timed too when it fails the guard: the profile says what it cost
        if guard.accepted:
            accepted.add((backend, precision))
    fastest = interleaved_minimum(models, cases[0][0], repeats)
    for (backend, precision), ms in fastest.items():
        measured[f"{backend}-{precision}"]["encoder_ms"] = ms
    backend, precision = min(accepted, key=fastest.get)
    torch_ms, best_ms = fastest[("torch", "fp32")], fastest[(backend, precision)]
    profile = {"auto": {"backend": backend, "precision": precision}, "measured": measured,
               "source": "calibration on first use (bundled CT samples)", "threads": threads,
               "load": load, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_speed_profile(profile)
    progress(f"auto = {backend} {precision} (encoder {best_ms:.0f} ms vs torch fp32 {torch_ms:.0f} ms, fastest "
             f"of {repeats} interleaved runs; machine load {load:.1f}; calibrated in "
             f"{time.perf_counter() - t_start:.0f} s)")
    return profile, models[(backend, precision)]


def interleaved_minimum(models: dict, display: np.ndarray, repeats: int) -> dict:
    """Fastest encoder time (ms) of each model over ``repeats`` rounds, one encoding of every
    model per round (the same image)."""
    inputs = {key: model.preprocess(display)[0] for key, model in models.items()}
    best = {key: float("inf") for key in models}
    for _ in range(max(1, repeats)):
        for key, model in models.items():
            t0 = time.perf_counter()
            model.encode(inputs[key])
            best[key] = min(best[key], (time.perf_counter() - t0) * 1000.0)
    return best


def machine_load() -> float:
    """The 1-minute load average (0 where the OS has none), recorded with the calibration."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0
