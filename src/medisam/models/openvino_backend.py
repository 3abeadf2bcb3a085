"""OpenVINO backend: the same exported ONNX graphs compiled by OpenVINO for the CPU.

``precision="bf16"`` sets OpenVINO's ``INFERENCE_PRECISION_HINT`` to bf16 (native on
AVX512_BF16/AMX CPUs); fp32 pins f32 so results match torch to ~1e-5; ``int8`` runs the
NNCF-quantised encoder (:mod:`medisam.models.quantize`, made once per export) with the
float ops and the decoder in bf16 where the CPU has it, else f32. Compiled models
are cached in ``<cache>/openvino/`` (``$MEDISAM_CACHE``, default ``~/.cache/medisam``).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from medisam.errors import ModelError, require
from medisam.export.onnx_export import read_export_metadata
from medisam.models.decoder_feeds import (FastDecoderInputs, decode_best_fast, decode_fast, decoder_feeds,
                                          select_masks)
from medisam.models.export_cache import cached_export, folded_decoders
from medisam.models.float_mode import float_mode_kept
from medisam.models.openvino_attention import rewritten_encoder
from medisam.models.openvino_shapes import POINT_BUCKETS, Compiled, StaticShapes
from medisam.models.runtime import cache_root
from medisam.models.precision import cpu_has_bf16
from medisam.models.promptable import DecoderOutput, PromptableModel

log = logging.getLogger(__name__)

_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}

#: Decoders compile without OpenVINO's "snippets" (fused attention subgraphs): with a handful
#: of prompt tokens against 4096 image tokens the fused kernels run on AVX-512 instead of AMX
#: tiles; plain MatMul + Softmax is ~25% faster for the fast decoder and ~8% for the full
#: one (one thread, Sapphire Rapids, bf16; the encoder keeps snippets, it is faster with them).
DECODER_CONFIG = {"SNIPPETS_MODE": "DISABLE"}

#: Denormal floats flushed to zero in OpenVINO's kernels (FTZ/DAZ), for every compiled graph: the
#: embeddings were bit-identical on 18 real images of six 2D sets and the fast decoder's logits on
#: a random embedding; the encoder ran 1.5 % and 4.2 % faster (67 of 90 interleaved rounds), the
#: decoder 1.3 % (stop 49, AMX Xeon, bf16). Left out where the runtime does not know the property.
DENORMALS_CONFIG = {"CPU_DENORMALS_OPTIMIZATION": True}


def _supported(core, config: dict) -> dict:  # noqa: ANN001 - an openvino Core
    """The entries of ``config`` that this OpenVINO's CPU plugin knows."""
    try:
        known = set(core.get_property("CPU", "SUPPORTED_PROPERTIES"))
    except Exception as exc:  # pragma: no cover - older runtimes
        log.debug("OpenVINO CPU properties unavailable: %s", exc)
        return {}
    return {k: v for k, v in config.items() if k in known}


class OpenVinoModel(PromptableModel):
    """A :class:`PromptableModel` whose encoder and decoder are OpenVINO compiled models (CPU)."""

    def __init__(self, base: PromptableModel, device: torch.device, precision: str = "fp32",
                 threads: int = 1):
        ov = require("openvino", "openvino")
        if device.type != "cpu":
            raise ModelError("backend openvino runs on the CPU here: pass device='cpu'")
        if precision not in _HINT:
            raise ModelError(f"backend openvino runs fp32, bf16 or int8, not {precision}")
        super().__init__(base.spec, base.net_source(), torch.device("cpu"), base.checkpoint,
                         base.checkpoint_sha256)
        self.backend = "openvino"
        self.precision = precision
        self.threads = threads
        self.export_dir = cached_export(base)
        self.exported_mask_input_size = int(read_export_metadata(self.export_dir)["mask_input_size"])
        core = ov.Core()
        try:  # compiled blobs are reused by later loads (OpenVINO model caching)
            core.set_property({"CACHE_DIR": str(cache_root() / "openvino")})
        except Exception as exc:  # pragma: no cover - older runtimes
            log.debug("OpenVINO model cache unavailable: %s", exc)
        hint = _HINT[precision] if precision != "int8" or cpu_has_bf16() else "f32"
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY", **_supported(core, DENORMALS_CONFIG)}
        # the float encoders read the export with attention's K transposes made fusable (openvino_attention)
        encoder = int8_encoder(base, self.export_dir) if precision == "int8" else rewritten_encoder(self.export_dir)
        self._core, self._encoder_path, self._config = core, encoder, config
        self._encoder = self._compile(str(encoder), config)
        self._encoder_run = Compiled(self._encoder)  # an infer request per thread
        # batches (a propagation's prefetch) run on single-thread streams instead, made on first use
        self._streams = None
        self._streams_lock = threading.Lock()
        # the decoder follows the precision too (bf16 made it ~1.4x faster here); the Dice
        # guard in benchmarks/speed.py measures encoder + decoder together. The full decoder
        # serves mask prompts only (and every prompt without a fast decoder): compiled on first use
        self._full_decoder = None
        self._decoder_lock = threading.Lock()
        # An infer request is not thread-safe ("Infer Request is busy"); the server runs model
        # calls of several sessions at once, so each thread gets its own requests (Compiled) and
        # its own queue of the streams encoder (here).
        self._requests = threading.local()
        #: box/point prompts without a mask prompt run the fast decoder (None: not available)
        self._fast_decoder = None
        self._fast_inputs = FastDecoderInputs(base.spec.input_size)
        fast, best = folded_decoders(base, self.export_dir)
        if fast is not None:
            try:
                self._fast_decoder = self._decoder_shapes(fast, buckets=POINT_BUCKETS)
            except Exception as exc:  # an OpenVINO plugin bug must not break the backend
                log.warning("OpenVINO cannot compile the fast decoder (%s); using decoder.onnx", exc)
        #: the best of several boxes (a propagation step's margins): exported now, compiled on first use
        self._best_path = best
        self._best_compiled = None

    @property
    def _decoder(self) -> StaticShapes:
        """The full decoder (mask prompts), compiled on first use (about a second per load saved)."""
        with self._decoder_lock:
            if self._full_decoder is None:
                # dynamic shapes only: compiled for one shape, its logits moved by up to 0.25 in bf16
                self._full_decoder = self._decoder_shapes(self.export_dir / "decoder.onnx", static=False)
            return self._full_decoder

    def _best_decoder(self) -> StaticShapes | None:
        """The best-of-boxes decoder, compiled on first use; None where it is not available."""
        with self._decoder_lock:
            if self._best_compiled is None and self._best_path is not None:
                try:
                    self._best_compiled = self._decoder_shapes(self._best_path)
                except Exception as exc:  # an OpenVINO plugin bug must not break the backend
                    log.warning("OpenVINO cannot compile the best-of-boxes decoder (%s); decoding every box", exc)
                    self._best_path = None
            return self._best_compiled

    def _compile_decoder(self, model, static: bool = False):  # noqa: ANN001, ANN202 - Path or ov.Model -> CompiledModel
        """A decoder graph compiled with :data:`DECODER_CONFIG` (without it where the plugin lacks the option).
        ``static``: a variant of fixed prompt shapes (:meth:`_decoder_shapes`) other than the few padded
        point counts (:data:`~medisam.models.openvino_shapes.POINT_BUCKETS`), kept out of the model
        cache (one blob per shape would grow it without bound)."""
        # OpenVINO's model cache keys blobs without SNIPPETS_MODE: a blob compiled with snippets
        # would be reused, so these decoders keep their blobs in a folder of their own
        own_cache = {"CACHE_DIR": "" if static else str(cache_root() / "openvino" / "decoders-no-snippets")}
        config = dict(self._config, **own_cache)
        model = str(model) if not hasattr(model, "reshape") else model
        try:
            return self._compile(model, {**config, **DECODER_CONFIG})
        except RuntimeError as exc:
            log.debug("OpenVINO rejects %s (%s); compiling without it", DECODER_CONFIG, exc)
            return self._compile(model, config)

    def _compile(self, model, config: dict):  # noqa: ANN001, ANN202 - path or ov.Model -> CompiledModel
        """Every compile of this backend: the calling thread's float mode is kept, as OpenVINO's
        denormals option would leave FTZ/DAZ set on it (:mod:`~medisam.models.float_mode`)."""
        with float_mode_kept():
            return self._core.compile_model(model, "CPU", config)

    def _decoder_shapes(self, path, static: bool = True,  # noqa: ANN001 - a Path
                        buckets: tuple[int, ...] = ()) -> StaticShapes:
        """A decoder graph compiled with dynamic prompt shapes, and (``static``) for the shapes in
        use (:mod:`~medisam.models.openvino_shapes`: the same outputs, ~0.8x the time); one-prompt
        feeds padded to ``buckets`` points (compiled in the background when first needed, in the model cache)."""
        if not static:
            return StaticShapes.dynamic_only(self._compile_decoder(path))
        from medisam.models.fast_decoder import pad_points

        graph = []  # the graph as read, once: each static variant reshapes a copy of it
        lock = threading.Lock()  # the warm-up thread and a call's second use may read it at once

        def compile_for(shapes: dict[str, tuple[int, ...]]):  # noqa: ANN202 - an openvino CompiledModel
            with lock:
                if not graph:
                    graph.append(self._core.read_model(str(path)))
                model = graph[0].clone()
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            coords = shapes.get("point_coords", (0, 0))
            bucket = coords[0] == 1 and coords[1] in buckets  # a bounded set: kept in the model cache
            return self._compile_decoder(model, static=not bucket)
        return StaticShapes.of(self._compile_decoder(path), compile_for, buckets, pad_points if buckets else None)

    def warm_full_decoder(self) -> None:
        """Queue the full decoder (mask prompts) for compiling on the fast decoder's background
        thread: called at a session's first click, since a click's next step (a 3D refinement, a
        prompt with the previous mask) is a mask prompt, which would otherwise wait ~0.35 s for it."""
        if self._fast_decoder is not None and self._full_decoder is None:
            self._fast_decoder.in_background(("full decoder",), lambda: self._decoder)

    @property
    def cache_signature(self) -> str:
        return f"{super().cache_signature}|{self.precision}"

    def _stream_encoder(self):  # noqa: ANN202 - an openvino CompiledModel
        """The encoder compiled for throughput: ``threads`` streams of one thread each."""
        with self._streams_lock:
            if self._streams is None:
                config = dict(self._config, PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=self.threads)
                self._streams = self._compile(str(self._encoder_path), config)
            return self._streams

    def _encode_streams(self, x: np.ndarray) -> np.ndarray:
        """A batch on the throughput-compiled encoder, ``threads`` images at once.

        Same graph and precision as the latency-compiled encoder, so the same numbers; a
        propagation's prefetched planes run ~7% less CPU and ~25% less wall time (4 planes, 2
        cores, loaded machine) as the streams never wait on each other's threads.
        """
        from openvino import AsyncInferQueue

        queue = getattr(self._requests, "queue", None)
        if queue is None:
            queue = self._requests.queue = AsyncInferQueue(self._stream_encoder(), self.threads)
        outs: list = [None] * x.shape[0]

        def done(request, i: int) -> None:  # noqa: ANN001 - an openvino InferRequest
            outs[i] = request.get_output_tensor(0).data.copy()

        queue.set_callback(done)
        for i in range(x.shape[0]):
            queue.start_async({"image": x[i:i + 1]}, i)
        queue.wait_all()
        return np.concatenate(outs, axis=0)

    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 256, h, w)``; a batch runs ``threads`` images at once on
        single-thread streams (:meth:`_encode_streams`), one image on all threads."""
        x = np.ascontiguousarray(tensor.detach().float().cpu().numpy())
        if x.shape[0] > 1 and self.threads > 1:
            return torch.from_numpy(self._encode_streams(x)).to(self.device)
        # share_inputs: no copy of the input; outputs are copied once (share_outputs=False)
        outs = [self._encoder_run.request().infer({"image": x[i:i + 1]}, share_inputs=True)[0]
                for i in range(x.shape[0])]
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)).to(self.device)

    def decode(self, embedding: torch.Tensor, *, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
               multimask: bool | str = False) -> DecoderOutput:
        # zero-copy in (the 4 MiB embedding) and out; only the selected masks are copied
        # out of OpenVINO's buffers before the next request reuses them
        if mask_input is None and self._fast_decoder is not None:
            if points is not None:
                self.warm_full_decoder()
            # decode_fast copies the kept masks out of OpenVINO's buffers before the next run
            return decode_fast(self._fast_decoder.run, self._fast_inputs, embedding, points, boxes, multimask)
        outputs = self._decoder.run(decoder_feeds(embedding, points, boxes, mask_input, self.mask_input_size))
        out = select_masks(torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1]), multimask)
        return DecoderOutput(out.low_res_logits.clone(), out.iou.clone())

    def decode_best(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[int, DecoderOutput]:
        compiled = self._best_decoder()
        if compiled is not None:
            chosen = decode_best_fast(compiled.run, self._fast_inputs, embedding, boxes)
            if chosen is not None:
                return chosen
        return super().decode_best(embedding, boxes)


def int8_encoder(base: PromptableModel, folder):  # noqa: ANN001, ANN201 - Path -> Path
    """The NNCF int8 encoder of ``folder`` (quantised on first use, with a progress line)."""
    from medisam.models.calibration import sample_cases
    from medisam.models.runtime import progress
    from medisam.models.quantize import calibration_inputs, quantize_encoder, quantized_encoder_path

    target = quantized_encoder_path(folder)
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    import time

    t0 = time.perf_counter()
    progress(f"quantising the {base.spec.name} encoder to int8 (first use only) -> {target}")
    images = [image for image, _, _ in sample_cases()]
    path = quantize_encoder(folder, calibration_inputs(base.preprocess, images))
    progress(f"int8 encoder done in {time.perf_counter() - t0:.0f} s")
    return path
