"""The one place that knows the layout of sam2's private video inference state.

sam2's ``SAM2VideoPredictor.init_state`` only reads JPEG folders or MP4 files, so the
state for frames held in memory is built here, field for field as ``init_state`` does
(``tests/sam2/test_sam2_state.py`` compares the two, so a sam2 release that changes the
layout fails that test rather than a session). Everything else that reads the state
(per-object outputs, prompted frames) goes through the functions below.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch

State = dict[str, Any]


def new_state(frames: Sequence[torch.Tensor], height: int, width: int, device: torch.device) -> State:
    """sam2's inference state over ``frames`` (``frames[i]`` a ``(3, S, S)`` input tensor),
    as ``init_state(..., offload_video_to_cpu=True, offload_state_to_cpu=False)`` makes it
    (without its warm-up encoding of frame 0)."""
    return {
        "images": frames, "num_frames": len(frames),
        "offload_video_to_cpu": True, "offload_state_to_cpu": False,
        "video_height": height, "video_width": width,
        "device": device, "storage_device": device,
        "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {},
        "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
        "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def frame_output(state: State, obj_id: int, frame: int) -> dict[str, Any] | None:
    """sam2's latest output of one object on a frame (prompt outputs first), or None."""
    idx = state["obj_id_to_idx"].get(obj_id)
    if idx is None:
        return None
    for store in (state["temp_output_dict_per_obj"][idx], state["output_dict_per_obj"][idx]):
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            if frame in store[key]:
                return store[key][frame]
    return None


def is_conditioning(state: State, obj_id: int, frame: int) -> bool:
    """Whether ``frame`` is a prompted ("conditioning") frame of ``obj_id`` after consolidation."""
    idx = state["obj_id_to_idx"].get(obj_id)
    return idx is not None and frame in state["output_dict_per_obj"][idx]["cond_frame_outputs"]


def conditioning_frames(state: State) -> set[int]:
    """Frames any object has a prompt output on."""
    return {t for key in ("output_dict_per_obj", "temp_output_dict_per_obj")
            for out in state[key].values() for t in out["cond_frame_outputs"]}


def forget_tracking(state: State) -> None:
    """Drop what earlier propagations tracked (the frames that are not prompted), keeping the prompts'
    own outputs, so that the next propagation tracks from the prompts alone: sam2 used the last run's
    frames as memory, and propagating twice with nothing changed gave other masks (18 voxels of 14,170
    on a tiny model; 155 of 51,833 for MedSAM2)."""
    for idx, out in state["output_dict_per_obj"].items():
        out["non_cond_frame_outputs"].clear()
        tracked = state["frames_tracked_per_obj"].get(idx)
        if tracked is not None:
            for frame in [f for f in tracked if f not in out["cond_frame_outputs"]]:
                del tracked[frame]


#: the per-object containers of a state that prompts and tracking change (``tracking_copy`` copies them)
_PER_OBJECT = ("point_inputs_per_obj", "mask_inputs_per_obj", "frames_tracked_per_obj")
_OUTPUTS = ("output_dict_per_obj", "temp_output_dict_per_obj")
_IDS = ("obj_id_to_idx", "obj_idx_to_id", "obj_ids")


def tracking_copy(state: State) -> State:
    """What prompts and tracking have put in ``state`` (the object ids, their inputs, their outputs
    per frame, the frames tracked), as containers of its own sharing every tensor: an undo step's
    copy for :func:`restore_tracking`.

    Sharing the tensors is safe because sam2 (1.x) never changes a stored one in place: new outputs
    are new tensors, and what it edits later are the containers (a removal re-keys the objects,
    ``propagate_in_video_preflight`` moves outputs and clears the temporary ones, our
    :func:`forget_tracking` clears the tracked frames) and, in place, the ``maskmem_features`` /
    ``maskmem_pos_enc`` entries of a temporary (prompt) output, which preflight fills. So every
    container down to each frame's output dict is copied; the tensors are not."""
    copy: State = {key: type(state[key])(state[key]) for key in _IDS}
    copy.update({key: {idx: dict(frames) for idx, frames in state[key].items()} for key in _PER_OBJECT})
    copy.update({key: {idx: {kind: {t: dict(out) for t, out in outs.items()} for kind, outs in per_kind.items()}
                       for idx, per_kind in state[key].items()} for key in _OUTPUTS})
    return copy


def restore_tracking(state: State, saved: State) -> None:
    """Give ``state`` back what :func:`tracking_copy` took (copied again: ``saved`` stays as it was),
    so that sam2 goes on as if nothing had happened since: a click on a tracked frame corrects the
    tracked mask (its ``prev_out`` logits) as it did then, and a propagation uses the same prompts."""
    state.update(tracking_copy(saved))
