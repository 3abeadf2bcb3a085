"""Inputs and outputs of the exported decoder graphs, shared by ONNX Runtime and OpenVINO."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from medisam.models.promptable import DecoderOutput, first_best, kept_masks
from medisam.models.upscale_window import place, prompt_window, reaches_edge, whole_grid


class FastDecoderInputs:
    """Feeds of the fast decoder graphs; keeps the channels-last tokens of the last embedding,
    so several prompts on one image (interactive clicks, the boxes of a propagation step)
    transpose it once. ``input_size``: the model's input side (the prompts' grid)."""

    def __init__(self, input_size: int):
        self.input_size = input_size
        self._lock = threading.Lock()
        self._embedding: torch.Tensor | None = None  # held, so its identity cannot be reused
        self._version = -1
        self._tokens: np.ndarray | None = None

    def tokens(self, embedding: torch.Tensor) -> np.ndarray:
        from medisam.models.fast_decoder import image_tokens

        with self._lock:  # servers decode from several threads
            if embedding is not self._embedding or embedding._version != self._version:
                self._tokens = image_tokens(embedding.detach().float().cpu().numpy())
                self._embedding, self._version = embedding, embedding._version
            return self._tokens  # type: ignore[return-value]

    def feeds(self, embedding: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None,
              boxes: torch.Tensor | None) -> dict[str, np.ndarray]:
        coords, labels = prompts_to_points(points, boxes)
        side = int(embedding.shape[-1])
        coords_np, labels_np = coords.numpy(), labels.numpy()
        return {"image_tokens": self.tokens(embedding), "point_coords": coords_np, "point_labels": labels_np,
                "window": prompt_window(coords_np, labels_np, side, self.input_size)}


#: runs a fast graph on its feeds and returns its outputs (numpy arrays, in the graph's order)
GraphRun = Callable[[dict], Sequence[np.ndarray]]


def _window_masks(blocked: np.ndarray, keep: slice, window: np.ndarray, side: int) -> np.ndarray | None:
    """The kept masks of a window's blocked logits placed on the whole grid; None where one
    reaches the window's edge (:func:`~medisam.models.upscale_window.reaches_edge`)."""
    from medisam.models.fast_decoder import unshuffle_masks

    r0, r1, c0, c1 = (int(v) for v in window)
    masks = unshuffle_masks(blocked, keep, (r1 - r0, c1 - c0))
    return None if reaches_edge(masks, window, side) else place(masks, window, side)


def _run_in_window(run: GraphRun, feeds: dict, side: int, keep: slice) -> tuple[Sequence[np.ndarray], np.ndarray]:
    """Run a fast graph in the prompts' window, and again on the whole grid where a kept mask
    reaches the window's edge: ``(the last run's outputs, the kept masks on the whole grid)``."""
    for window in (feeds["window"], whole_grid(side)):
        feeds["window"] = window
        outputs = run(feeds)
        masks = _window_masks(outputs[0], keep, window, side)
        if masks is not None:
            return outputs, masks
    raise AssertionError("the whole grid has no edge to reach")  # pragma: no cover


def decode_fast(run: GraphRun, inputs: FastDecoderInputs, embedding: torch.Tensor,
                points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                multimask: bool | str) -> DecoderOutput:
    """Box/point prompts on the fast graph: the masks asked for, upscaled in the prompts'
    window, or on the whole grid where a kept mask reaches the window's edge."""
    keep = kept_masks(multimask)
    outputs, masks = _run_in_window(run, inputs.feeds(embedding, points, boxes), int(embedding.shape[-1]), keep)
    return DecoderOutput(torch.from_numpy(masks), torch.from_numpy(np.array(outputs[1][:, keep], dtype=np.float32)))


def decode_best_fast(run: GraphRun, inputs: FastDecoderInputs, embedding: torch.Tensor,
                     boxes: torch.Tensor) -> tuple[int, DecoderOutput] | None:
    """The best of several boxes on the best-of-boxes graph: ``(index, DecoderOutput)`` of the
    winner's single mask, upscaled in the boxes' window (the whole grid where it reaches the
    window's edge).

    None when the graph's ``argmax`` chose another box than :func:`first_best` of the same
    IoU (a NaN score; or a runtime breaking a tie another way): the caller then decodes
    every box, so the rule, not the runtime, decides.
    """
    (_, iou, index), masks = _run_in_window(run, inputs.feeds(embedding, None, boxes), int(embedding.shape[-1]),
                                            slice(0, 1))
    best = int(np.asarray(index).reshape(-1)[0])
    if best != first_best(iou[:, 0]):
        return None
    return best, DecoderOutput(torch.from_numpy(masks), torch.from_numpy(np.array(iou[best:best + 1, :1],
                                                                                  dtype=np.float32)))


def prompts_to_points(points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder inputs as one point list, exactly as ``PromptEncoder.forward``.

    Points first (padded with one ``(0, 0)`` label -1 point when there is no box), then
    each box as two corners with labels 2 and 3. Returns coords ``(B, N, 2)`` and float
    labels ``(B, N)`` on the model grid; N may be 0 (mask-only prompt).
    """
    parts_c, parts_l = [], []
    batch = 1
    if points is not None:
        coords, labels = points
        coords, labels = coords.float().cpu(), labels.float().cpu()
        batch = coords.shape[0]
        if boxes is None:
            coords = torch.cat([coords, torch.zeros(batch, 1, 2)], dim=1)
            labels = torch.cat([labels, -torch.ones(batch, 1)], dim=1)
        parts_c.append(coords)
        parts_l.append(labels)
    if boxes is not None:
        b = boxes.float().cpu().reshape(-1, 2, 2)
        batch = max(batch, b.shape[0])
        parts_c.append(b)
        parts_l.append(torch.tensor([[2.0, 3.0]]).expand(b.shape[0], 2))
    if not parts_c:
        return torch.zeros(batch, 0, 2), torch.zeros(batch, 0)
    if len(parts_c) == 2 and parts_c[0].shape[0] != parts_c[1].shape[0]:
        parts_c = [p.expand(batch, -1, -1) for p in parts_c]
        parts_l = [p.expand(batch, -1) for p in parts_l]
    return torch.cat(parts_c, dim=1).contiguous(), torch.cat(parts_l, dim=1).contiguous()


def select_masks(low_res: torch.Tensor, iou: torch.Tensor, multimask: bool | str) -> DecoderOutput:
    """The masks :func:`kept_masks` keeps of the exported decoder's four outputs."""
    sl = kept_masks(multimask)
    return DecoderOutput(low_res[:, sl], iou[:, sl])


def decoder_feeds(embedding: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None,
                  boxes: torch.Tensor | None, mask_input: torch.Tensor | None,
                  mask_size: int) -> dict[str, np.ndarray]:
    """Inputs of the exported prompt-encoder+decoder graph (shared by ONNX Runtime and OpenVINO)."""
    coords, labels = prompts_to_points(points, boxes)
    if mask_input is None:
        mask = np.zeros((1, 1, mask_size, mask_size), dtype=np.float32)
        has_mask = np.zeros(1, dtype=np.float32)
    else:
        mask = mask_input.detach().float().cpu().numpy()
        has_mask = np.ones(1, dtype=np.float32)
    return {"image_embeddings": embedding.detach().float().cpu().numpy(),
            "point_coords": coords.numpy(), "point_labels": labels.numpy(),
            "mask_input": mask, "has_mask_input": has_mask}
