"""The 3D click layer of a single-axis session: voxels set by corrective 3D clicks.

A session's slice results are the model's; :mod:`~medisam.predict.refine3d` refines an
object around a 3D click and stores the outcome as an :class:`~medisam.predict.edits.EditLayer`
(a crop) in the object's prompt state. This mixin shows that layer over the slice results
and gives the walker what it needs on a crop only, so a click costs the crop, not the volume.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medisam.io.intensity import apply_window
from medisam.predict.click_refine import ClickMemo, voxel_scale
from medisam.predict.contract import SliceResult
from medisam.predict.display_volume import DisplayVolume
from medisam.predict.edits import EditLayer
from medisam.predict.store import Click3D

Crop = tuple[slice, slice, slice]


class ClickLayer:
    """Mixin of :class:`~medisam.predict.axis_session.AxisSession` (needs ``geometry``, ``store``,
    ``plane_hw``, ``object_ids``, ``_objects``, ``_known``, ``model_results``, ``step``, ``_display``
    and ``_guides``)."""

    @property
    def walker_memo(self) -> ClickMemo:
        """What the 3D click walker made of this session's clicks on its last crops (bounded; see
        :class:`~medisam.predict.click_refine.ClickMemo`): a click applies its new clicks, not all."""
        memo = self.__dict__.get("_walker_memo")
        if memo is None:
            memo = self._walker_memo = ClickMemo()
        return memo

    @property
    def display(self) -> np.ndarray | DisplayVolume:
        """The volume as the encoder sees it, float32 ``(Z, Y, X)`` in [0, 255], read-only: index it
        for a plane or a crop (a :class:`~medisam.predict.display_volume.DisplayVolume` maps only
        what is read; ``np.asarray`` gives the whole volume)."""
        if isinstance(self._display, DisplayVolume):
            return self._display
        view = self._display.view()
        view.flags.writeable = False
        return view

    def click_features(self, crop: Crop, obj_id: int | None = None) -> np.ndarray:
        """What the 3D click walker of ``obj_id`` sees on ``crop``: the display volume (in the
        object's own window where its 3D box has one, as its views saw it), ``(z, y, x)``, or with
        the session's guide channels (other images of the same volume, each mapped to [0, 255]
        as the display) stacked last, ``(z, y, x, 1 + guides)``."""
        window = None if obj_id is None else self._objects[self._known(obj_id)].window
        seen = self._display[crop] if window is None else apply_window(self.image.array[crop], window)
        if not self._guides:
            return seen
        return np.stack([seen, *(g[crop] for g in self._guides)], axis=-1)

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        """The current result of one object per slice (only slices with a result); the
        voxels set by 3D corrective clicks (:mod:`~medisam.predict.refine3d`) included."""
        return self.with_clicks(obj_id, self.model_results(obj_id))

    def with_clicks(self, obj_id: int, model: dict[int, SliceResult]) -> dict[int, SliceResult]:
        """:meth:`results` from the object's :meth:`model_results` ``model`` (updated in place and
        returned): the 3D click layer pasted over it, for callers that need both."""
        state = self._objects[self._known(obj_id)]
        if state.edit is not None:
            model.update(self._edited(obj_id, state.edit, model))
        return model

    def object_volume(self, obj_id: int, model_only: bool = False) -> np.ndarray:
        """The object's ``(Z, Y, X)`` bool mask (``model_only``: without the 3D clicks' voxels)."""
        return self.object_crop(obj_id, (slice(None),) * 3, model_only)  # type: ignore[arg-type]

    def object_size(self, obj_id: int) -> int:
        """Voxels of the object's current mask (3D clicks included), counted plane by plane."""
        return sum(r.area for r in self.results(obj_id).values())

    def object_crop(self, obj_id: int, crop: Crop, model_only: bool = False) -> np.ndarray:
        """The object's bool mask on ``crop`` of the ``(Z, Y, X)`` grid: only the planes and the
        part of each plane that the crop covers are read, and the click layer is pasted on its
        overlap with the crop (what :meth:`results` shows there, without building every plane)."""
        crop = self._bounded(crop)
        model = self._model_crop(obj_id, crop)
        return model if model_only else self._with_layer(obj_id, crop, model)

    def object_crops(self, obj_id: int, crop: Crop) -> tuple[np.ndarray, np.ndarray]:
        """``(model's mask, current mask)`` of the object on ``crop``: :meth:`object_crop` without
        and with the click layer, from one read of the results (a click needs both)."""
        crop = self._bounded(crop)
        model = self._model_crop(obj_id, crop)
        return model, self._with_layer(obj_id, crop, model)

    def _model_crop(self, obj_id: int, crop: Crop) -> np.ndarray:
        """The model's mask of the object on a bounded ``crop``: the crop's planes only."""
        out = np.zeros([s.stop - s.start for s in crop], dtype=bool)
        ax = self.geometry.axis
        rows, cols = self.geometry.plane_axes
        results = self.model_results(obj_id, within=(crop[ax].start, crop[ax].stop - 1))
        for t in range(crop[ax].start, crop[ax].stop):
            r = results.get(t)
            if r is not None:
                self.geometry.put(out, t - crop[ax].start, r.part(crop[rows], crop[cols]), True)
        return out

    def _with_layer(self, obj_id: int, crop: Crop, model: np.ndarray) -> np.ndarray:
        """``model`` (the object's model mask on a bounded ``crop``) with its click layer pasted on
        their overlap: a new array where they meet, ``model`` itself where they do not."""
        layer = self._objects[obj_id].edit
        part = None if layer is None else layer.overlap(crop)
        if part is None:
            return model
        out = model.copy()
        out[tuple(slice(p.start - c.start, p.stop - c.start) for p, c in zip(part, crop))] = \
            layer.mask[tuple(slice(p.start - o, p.stop - o) for p, o in zip(part, layer.origin))]
        return out

    def _bounded(self, crop: Crop) -> Crop:
        """``crop`` with every slice's start and stop resolved on the volume's grid."""
        return tuple(slice(*s.indices(n)[:2]) for s, n in zip(crop, self.geometry.shape_zyx))  # type: ignore[return-value]

    def object_touches(self, obj_id: int, crop: Crop) -> bool:
        """Whether :meth:`object_crop` of ``crop`` may hold a voxel: a result's stored window on the
        crop's planes, or the click layer, meets the crop. False means that crop is empty; the test
        builds no array, so a click among hundreds of objects reads only the ones near it."""
        crop = self._bounded(crop)
        layer = self._objects[obj_id].edit
        if layer is not None and layer.overlap(crop) is not None:
            return True
        ax = self.geometry.axis
        rows, cols = (crop[a] for a in self.geometry.plane_axes)
        for r in self.model_results(obj_id, within=(crop[ax].start, crop[ax].stop - 1)).values():
            rr, cc = r.window
            if rr.start < rows.stop and rows.start < rr.stop and cc.start < cols.stop and cols.start < cc.stop:
                return True
        return False

    def object_extent(self, obj_id: int, model_only: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """``(lo, hi)`` voxel corners (inclusive, ``(z, y, x)``) of the object's mask; None when empty."""
        ax = self.geometry.axis
        rows, cols = self.geometry.plane_axes
        lo, hi = [None] * 3, [None] * 3
        results = self.model_results(obj_id) if model_only else self.results(obj_id)
        for t, r in results.items():
            if not r.area:
                continue
            rr, cc = r.window  # the mask's tight box
            for a, low, high in ((ax, t, t), (rows, rr.start, rr.stop - 1), (cols, cc.start, cc.stop - 1)):
                lo[a] = int(low) if lo[a] is None else min(lo[a], int(low))
                hi[a] = int(high) if hi[a] is None else max(hi[a], int(high))
        return None if lo[0] is None else (tuple(lo), tuple(hi))  # type: ignore[arg-type]

    def set_edits(self, edits: dict[int, tuple[EditLayer, Sequence[Click3D]]]) -> None:
        """Set the 3D click layer of objects ``{obj_id: (layer, new clicks)}`` as ONE undo step
        (used by :func:`~medisam.predict.refine3d.refine_with_click`; the clicks are appended to
        the object's ``clicks3d``)."""
        for obj_id in edits:
            self._known(obj_id)
        with self.step():
            self.store.push()
            for obj_id, (layer, clicks) in edits.items():
                state = self._objects[obj_id]
                state.edit = layer
                state.clicks3d = (*state.clicks3d, *clicks)

    def _edited(self, obj_id: int, layer: EditLayer, base: dict[int, SliceResult]) -> dict[int, SliceResult]:
        """Slice results of the planes crossing ``layer``: the model's mask with the layer pasted in."""
        ax = self.geometry.axis
        rows, cols = self.geometry.plane_axes
        rs = slice(layer.origin[rows], layer.origin[rows] + layer.shape[rows])
        cs = slice(layer.origin[cols], layer.origin[cols] + layer.shape[cols])
        mask = layer.mask  # unpacked once, not per plane
        out = {}
        for i in range(layer.shape[ax]):
            t = layer.origin[ax] + i
            old = base.get(t)
            plane = np.zeros(self.plane_hw, dtype=bool) if old is None else old.mask.copy()
            plane[rs, cs] = np.take(mask, i, axis=ax)
            out[t] = SliceResult(t, obj_id, plane, 1.0 if old is None else old.score, None, "click3d", axis=ax)
        return out


def crop_of(points: Sequence[Sequence[int]], shape: Sequence[int], pad: int) -> Crop:
    """The crop of the ``(Z, Y, X)`` grid holding ``points``, padded by ``pad`` and clipped to ``shape``."""
    lo = np.maximum(np.min(points, axis=0) - pad, 0)
    hi = np.minimum(np.max(points, axis=0) + pad + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def window_around(crop: Crop, at: Sequence[int], spacing: Sequence[float], max_voxels: int) -> Crop:
    """``crop`` itself if it holds at most ``max_voxels``, else the largest part of it around voxel
    ``at`` that does: a box of the same physical side on every axis (voxels of the finest
    spacing), clipped to ``crop`` and shifted to stay inside it, so a click's cost stays bounded
    however large the object's box is."""
    sizes = np.array([s.stop - s.start for s in crop])
    if int(np.prod(sizes)) <= max_voxels:
        return crop
    f = voxel_scale(spacing)

    def sides(side: float) -> np.ndarray:
        return np.clip(np.floor(side / f), 1, sizes).astype(int)

    lo, hi = 1.0, float((sizes * f).max())
    for _ in range(40):  # the largest side whose box fits the budget
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if int(np.prod(sides(mid))) <= max_voxels else (lo, mid)
    out = []
    for s, n, c in zip(crop, sides(lo), at):
        start = int(np.clip(int(c) - n // 2, s.start, s.stop - n))
        out.append(slice(start, start + int(n)))
    return tuple(out)  # type: ignore[return-value]
