"""Volume node -> ``medisam serve`` request -> segmentation node, without any Qt.

Coordinate frames: Slicer works in RAS, medisam (ITK, DICOM) in LPS. The conversion
happens in exactly one place, :func:`geometry_from_ijk_to_ras`; everything else works in
voxel indices. Markups are read in world RAS and mapped to the volume's IJK through its parent
transform (:meth:`MedisamSegmentCore.ijk_to_world`); the segmentation goes under that same
transform, so it shows on the volume. ``slicer.util.arrayFromVolume`` gives ``(k, j, i)`` arrays, which is
medisam's ``(Z, Y, X)`` order, so label arrays travel without transposes. Prompts on the
server are pixels of slice ``k``: ``x = i`` (column), ``y = j`` (row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

#: RAS <-> LPS: flip the first two physical axes.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: voxels a voxel centre may lie outside an ROI face and still count as inside: rounding error only
#: (Slicer keeps an ROI's geometry to about float precision, ~1e-6 voxel), so that an ROI drawn on
#: voxel edges or centres covers those voxels, whichever side the error falls
EDGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ClickResult:
    """What :meth:`MedisamSegmentCore.click` did: clicks the model honoured / rejected, voxels after."""

    accepted: int
    rejected: int
    voxels: int


def _control_points(markups_node) -> list[list[float]]:  # noqa: ANN001
    out = []
    for n in range(markups_node.GetNumberOfControlPoints()):
        ras = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(n, ras)
        out.append(ras)
    return out


def _curve_points(curve_node) -> list[list[float]]:  # noqa: ANN001
    """The interpolated points of a markups curve in world (RAS) coordinates ([] when it has none)."""
    pts = curve_node.GetCurvePointsWorld()
    if pts is None:
        return []
    return [list(pts.GetPoint(n)) for n in range(pts.GetNumberOfPoints())]


class EmptySegmentationError(RuntimeError):
    """The server answered with an empty mask; nothing was written (shown to the user)."""


@dataclass(frozen=True)
class SegmentationResult:
    """What a run produced: the segment id in the segmentation node and the voxel count per slice range."""

    segment_id: str
    voxels: int
    slices: tuple[int, int]
    session_info: dict
    #: what the server's propagation said beyond the mask (e.g. a view left out of a 3D box's vote)
    notices: tuple[str, ...] = ()


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """Slicer's 4x4 IJK-to-RAS matrix -> ITK/LPS ``(spacing, origin, direction)`` in ITK order.

    ``direction`` is row-major 3x3 whose columns are the unit directions of i, j, k in LPS.
    """
    m = RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)
    axes = m[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"degenerate IJK-to-RAS matrix {ijk_to_ras.tolist()}")
    direction = axes / spacing
    return tuple(spacing.tolist()), tuple(m[:3, 3].tolist()), tuple(direction.ravel().tolist())


def _matrix(vtk_getter) -> np.ndarray:  # noqa: ANN001
    """The 4x4 matrix a VTK getter fills in, as numpy."""
    import vtk

    mat = vtk.vtkMatrix4x4()
    vtk_getter(mat)
    return _numpy(mat)


def _numpy(mat) -> np.ndarray:  # noqa: ANN001
    """A ``vtkMatrix4x4`` as a numpy 4x4 array."""
    return np.array([[mat.GetElement(r, c) for c in range(4)] for r in range(4)])


class MedisamSegmentCore:
    """The module's logic: send a volume and prompts to the server, write the answer into a segmentation.

    Args:
        client: a :class:`medisam.client.Client` connected to ``medisam serve``.
    """

    def __init__(self, client):  # noqa: ANN001
        self.client = client
        self.session = None  # the server session kept by segment(keep_session=True), for 3D clicks
        self.kept: tuple | None = None  # (volume node, segmentation node, segment id, name) of that session
        self._clicks: list[int] = []  # undo steps of each accepted click, for undo_click

    # ---------------------------------------------------------- geometry
    @staticmethod
    def ijk_to_ras(volume_node) -> np.ndarray:  # noqa: ANN001
        """The volume's own IJK-to-RAS (its local frame, before any parent transform): the geometry sent."""
        return _matrix(volume_node.GetIJKToRASMatrix)

    @classmethod
    def ijk_to_world(cls, volume_node) -> np.ndarray:  # noqa: ANN001
        """IJK -> world RAS through the volume's parent transform: where Slicer shows the volume and
        markups are drawn. A non-linear transform has no such matrix: an error, not a wrong box."""
        parent = volume_node.GetParentTransformNode()
        if parent is None:
            return cls.ijk_to_ras(volume_node)
        if not parent.IsTransformToWorldLinear():
            raise ValueError(f"the volume {volume_node.GetName()!r} is under a non-linear transform "
                             f"({parent.GetName()!r}): harden the transform on it first (Data module)")
        return _matrix(parent.GetMatrixTransformToWorld) @ cls.ijk_to_ras(volume_node)

    @classmethod
    def ras_to_ijk(cls, volume_node, ras: Sequence[Sequence[float]]) -> np.ndarray:  # noqa: ANN001
        """World RAS points (N, 3) -> continuous IJK (N, 3) of ``volume_node``."""
        inv = np.linalg.inv(cls.ijk_to_world(volume_node))
        pts = np.c_[np.asarray(ras, dtype=float).reshape(-1, 3), np.ones(len(ras))]
        return (inv @ pts.T).T[:, :3]

    @staticmethod
    def roi_corners(roi_node) -> np.ndarray:  # noqa: ANN001
        """The 8 corners (8, 3) of a markups ROI in world RAS, in the ROI's own orientation (its RAS
        bounds are axis-aligned: larger than a rotated ROI). An ROI under a non-linear transform is no box
        in world space: an error, not the box of its untransformed corners."""
        parent = roi_node.GetParentTransformNode()
        if parent is not None and not parent.IsTransformToWorldLinear():
            raise ValueError(f"the ROI {roi_node.GetName()!r} is under a non-linear transform ({parent.GetName()!r}): "
                             "harden the transform on it first (Data module), or draw the ROI outside it")
        half = np.asarray(roi_node.GetSize(), dtype=float) / 2
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        corners = np.c_[signs * half, np.ones(8)]
        return (_numpy(roi_node.GetObjectToWorldMatrix()) @ corners.T).T[:, :3]

    @classmethod
    def roi_to_slice_box(cls, volume_node, roi_node) -> tuple[int, tuple[float, float, float, float], tuple[int, int]]:  # noqa: ANN001
        """An ROI (markups ROI) -> (middle slice k, XYXY box in (i, j) pixel edges, inclusive k range),
        clipped to the volume: the voxels whose centres lie inside the ROI (as ``--box3d`` counts them)."""
        ijk = cls.ras_to_ijk(volume_node, cls.roi_corners(roi_node))
        nz, ny, nx = volume_node.GetImageData().GetDimensions()[::-1]
        # voxel centres sit at integer IJK: the first / last centre inside each face
        i0, j0, k0 = np.ceil(ijk.min(axis=0) - EDGE_TOLERANCE)
        i1, j1, k1 = np.floor(ijk.max(axis=0) + EDGE_TOLERANCE)
        box = (max(0.0, i0), max(0.0, j0), min(float(nx), i1 + 1), min(float(ny), j1 + 1))
        k_lo, k_hi = int(max(0, k0)), int(min(nz - 1, k1))
        if box[2] <= box[0] or box[3] <= box[1] or k_hi < k_lo:
            raise ValueError("the ROI does not overlap the volume")
        return (k_lo + k_hi) // 2, box, (k_lo, k_hi)

    @classmethod
    def markups_to_points(cls, volume_node, markups_node, label: int) -> list[tuple[int, float, float, int]]:  # noqa: ANN001
        """Control points -> ``(k, x=i, y=j, label)`` with the slice index rounded."""
        out = []
        for ras in _control_points(markups_node):
            i, j, k = cls.ras_to_ijk(volume_node, [ras])[0]
            out.append((int(round(k)), float(i), float(j), label))
        return out

    @staticmethod
    def check_points_on_slices(points: Sequence[tuple[int, float, float, int]], k_range: tuple[int, int]) -> None:
        """Refuse a point ``(k, x, y, label)`` off an ROI's slices before any request: the object is kept
        to those slices, so the point would be dropped (2D box) or refused after the upload (3D box)."""
        for k, x, y, label in points:
            if not k_range[0] <= k <= k_range[1]:
                raise ValueError(f"the {'positive' if label else 'negative'} point at (i, j) = ({x:.0f}, {y:.0f}) "
                                 f"lies on slice {k}, outside the ROI's slice range {k_range[0]}..{k_range[1]}: "
                                 "move it onto the ROI's slices or enlarge the ROI")

    @staticmethod
    def check_scribbles_on_slices(scribbles: Sequence[tuple[int, list, bool]], k_range: tuple[int, int]) -> None:
        """Refuse a scribble ``(k, polyline, positive)`` off an ROI's slices before any request: the object is
        kept to those slices, so its correction there would be cut away without a word."""
        for k, _, positive in scribbles:
            if not k_range[0] <= k <= k_range[1]:
                raise ValueError(f"the {'positive' if positive else 'negative'} scribble lies on slice {k}, outside "
                                 f"the ROI's slice range {k_range[0]}..{k_range[1]}: draw it on the ROI's slices "
                                 "or enlarge the ROI")

    @staticmethod
    def place_segmentation(volume_node, segmentation_node) -> None:  # noqa: ANN001
        """Put ``segmentation_node`` under ``volume_node``'s parent transform, so that its segments show on
        the volume; one whose segments sit under another transform is refused (moving it moves them)."""
        wanted = volume_node.GetTransformNodeID()
        if segmentation_node.GetTransformNodeID() == wanted:
            return
        if segmentation_node.GetSegmentation().GetNumberOfSegments():
            raise ValueError(f"the segmentation {segmentation_node.GetName()!r} has segments under another transform "
                             f"than the volume {volume_node.GetName()!r}: pick a new output segmentation")
        segmentation_node.SetAndObserveTransformNodeID(wanted)

    @classmethod
    def line_to_recist(cls, volume_node, line_node) -> tuple[int, tuple[float, float, float, float]]:  # noqa: ANN001
        """A markups line (a lesion's long axis) -> (slice k, (x0, y0, x1, y1) pixels of that slice).

        Both ends must lie on one k slice (within half a slice); pixel x = i + 0.5 (voxel centres
        at integer IJK, medisam pixels span [x, x + 1]).
        """
        ras = _control_points(line_node)
        if len(ras) != 2:
            raise ValueError("the RECIST line needs exactly two points (the ends of the lesion's long axis)")
        (i0, j0, k0), (i1, j1, k1) = cls.ras_to_ijk(volume_node, ras)
        k = int(round((k0 + k1) / 2))
        if abs(k0 - k1) > 1.0 or abs(k0 - k) > 0.5:
            raise ValueError(f"draw the RECIST line on one slice: its ends lie on slices {k0:.1f} and {k1:.1f}")
        return k, (i0 + 0.5, j0 + 0.5, i1 + 0.5, j1 + 0.5)

    @classmethod
    def curve_to_polyline(cls, volume_node, curve_node, what: str, minimum: int = 1  # noqa: ANN001
                          ) -> tuple[int, list[tuple[float, float]]]:
        """A markups curve as drawn (a scribble: open; a lasso: closed) -> (slice k, ``[(x, y), ...]``
        pixels of that slice), from its interpolated curve points (its control points when it has
        too few to interpolate). Every point must lie on one k slice (within half a slice); pixel
        x = i + 0.5, as :meth:`line_to_recist`."""
        if curve_node.GetNumberOfControlPoints() < minimum:
            raise ValueError(f"the {what} needs at least {minimum} point(s)")
        ras = _curve_points(curve_node) or _control_points(curve_node)
        ijk = cls.ras_to_ijk(volume_node, ras)
        k = int(round(float(np.median(ijk[:, 2]))))
        if np.abs(ijk[:, 2] - k).max() > 0.5:
            raise ValueError(f"draw the {what} on one slice: its points lie on slices {ijk[:, 2].min():.1f} to "
                             f"{ijk[:, 2].max():.1f}")
        return k, [(float(i) + 0.5, float(j) + 0.5) for i, j, _ in ijk]

    # --------------------------------------------------------------- run
    def segment(self, volume_node, segmentation_node, roi_node=None, positive_node=None,  # noqa: ANN001, PLR0913
                negative_node=None, *, propagate: bool = True, modality: str | None = None,
                window: str | None = None, box3d: bool = True, segment_name: str = "medisam",
                line_node=None, keep_session: bool = False, guide_nodes=(), scribble_node=None,
                negative_scribble_node=None, lasso_node=None) -> SegmentationResult:  # noqa: ANN001
        """Segment one object from an ROI (box), a RECIST line, a lasso, scribbles and/or point markups;
        add it as a segment.

        ``line_node`` (a markups line on one slice: a lesion's long axis) is sent as a RECIST
        line (the server derives the lesion's 3D box). ``lasso_node`` (a markups closed curve on
        one slice, traced around the object) is the object's mask on that slice, and the seed of
        its propagation; ``scribble_node`` / ``negative_scribble_node`` (markups open curves on one
        slice each) add clicks along them, positive / negative, as the web UI's scribbles: after an
        ROI, a RECIST line, a lasso or points they correct that object's 3D result (the server's
        walker, its propagation run first), alone a positive one starts it.
        With ``keep_session`` the server session
        stays open for :meth:`click` (3D corrective clicks) until :meth:`close_session`, and
        ``guide_nodes`` (other scalar volumes on the same grid, e.g. T1c beside a FLAIR input) go
        to the session as guides: the 3D clicks' walker sees them, the model sees the input only
        (a guide without ``keep_session`` is an error: it would serve nothing).

        The ROI prompts its middle slice; positive/negative control points on that (or any)
        slice refine it; with ``propagate`` the server carries the object through the volume.
        With ``box3d`` (default) the ROI is sent as a 3D box (``medisam propagate --box3d``):
        the object is segmented only on the ROI's slices. ``modality`` ("CT", "MR"...; None =
        what the server infers: MR-like min/max scaling for an NRRD upload) and ``window``
        (a CT preset or "WIDTH,LEVEL") choose the intensity handling.
        ``segment_name`` names the new segment; a known structure name ("liver") also sets its
        SNOMED CT terminology and colour (:meth:`code_segment`).
        Raises :class:`EmptySegmentationError` when the answer is empty (nothing is written).
        """
        import slicer

        array = slicer.util.arrayFromVolume(volume_node)
        if array.ndim != 3:
            raise ValueError(f"expected a scalar volume, got array shape {array.shape}")
        spacing, origin, direction = geometry_from_ijk_to_ras(self.ijk_to_ras(volume_node))
        points = []
        if positive_node is not None:
            points += self.markups_to_points(volume_node, positive_node, 1)
        if negative_node is not None:
            points += self.markups_to_points(volume_node, negative_node, 0)
        if sum(n is not None for n in (roi_node, line_node, lasso_node)) > 1:
            raise ValueError("use one of an ROI, a RECIST line or a lasso, not several")
        if (roi_node is None and line_node is None and lasso_node is None and scribble_node is None
                and not any(p[3] == 1 for p in points)):
            raise ValueError("place an ROI, a lasso, a positive scribble or at least one positive point "
                             "(or a RECIST line)")
        recist = self.line_to_recist(volume_node, line_node) if line_node is not None else None
        lasso = self.curve_to_polyline(volume_node, lasso_node, "lasso", 3) if lasso_node is not None else None
        scribbles = [(*self.curve_to_polyline(volume_node, node, "scribble"), positive)
                     for node, positive in ((scribble_node, True), (negative_scribble_node, False)) if node is not None]
        guide_nodes = [g for g in guide_nodes if g is not None]
        if guide_nodes and not keep_session:
            raise ValueError("a guide channel serves 3D corrective clicks only: keep the session "
                             "(keep_session=True) or leave the guide out")
        guides = [self.guide_array(volume_node, g) for g in guide_nodes]
        if roi_node is not None:
            k, box, k_range = self.roi_to_slice_box(volume_node, roi_node)
            self.check_points_on_slices(points, k_range)
            self.check_scribbles_on_slices(scribbles, k_range)
        else:
            k = recist[0] if recist else lasso[0] if lasso else points[0][0] if points else scribbles[0][0]
            box, k_range = None, (0, array.shape[0] - 1)
        self.place_segmentation(volume_node, segmentation_node)
        self.close_session()
        # axis 0: every prompt here is on a k slice of Slicer's (k, j, i) array, whatever the volume's
        # acquisition axis (the server's default) is
        session = self.client.open_session(np.ascontiguousarray(array), spacing=spacing, origin=origin,
                                           direction=direction, modality=modality, window=window, axis=0)
        try:
            for guide in guides:
                session.add_guide(guide)
            on_slice = [(x, y, lab) for kk, x, y, lab in points if kk == k]
            done = set()
            found = None  # the box the server answered points alone with (a box-trained model)
            if recist is not None:
                session.add_recist(slice=recist[0], line=recist[1])  # the lesion's 3D box
            elif box is not None and box3d and array.shape[0] > 1:
                session.add_box3d(box=box, slice_range=k_range)  # the server picks the seed slice
            elif lasso is not None:
                session.add_lasso(slice=lasso[0], polygon=lasso[1])  # the object's mask there, the seed
            elif box is not None or any(lab == 1 for *_, lab in on_slice):
                session.predict(slice=k, box=box, points=on_slice or None)
                done.add(k)
                found = session.last_found_box
            for kk, polyline, positive in scribbles:  # clicks along each, kept with the slice's prompts
                session.add_scribble(slice=kk, polyline=polyline, positive=positive)
            for kk in sorted({p[0] for p in points} - done):
                session.add_points(slice=kk, points=[(x, y, lab) for k2, x, y, lab in points if k2 == kk])
            notices: tuple[str, ...] = ()
            if found is not None:
                x0, y0, x1, y1 = found
                notices += (f"the points on slice {k} were answered with the box i {x0:.0f}..{x1:.0f}, "
                            f"j {y0:.0f}..{y1:.0f} found around them",)
            if propagate and array.shape[0] > 1:
                said = session.propagate()
                for line in said.get("plan", ()):  # the cost the server planned (views, encodings)
                    log.info("medisam: %s", line)
                notices += tuple(said.get("notices", ()))
            labels = session.labels()
            info = dict(session.info)
        finally:
            if keep_session:
                self.session = session
            else:
                session.__exit__(None, None, None)
        if labels.shape != array.shape:
            raise RuntimeError(f"server returned labels of shape {labels.shape} for a volume of {array.shape}")
        if roi_node is not None:  # the object stays inside the ROI's slice range
            labels[: k_range[0]] = 0
            labels[k_range[1] + 1:] = 0
        voxels = int((labels > 0).sum())
        if voxels == 0:
            raise EmptySegmentationError("medisam returned an empty mask: move or enlarge the ROI, "
                                         "add positive points, or check the window")
        segment_id = self.write_segment(volume_node, segmentation_node, labels > 0, segment_name)
        if keep_session:
            self.kept = (volume_node, segmentation_node, segment_id, segment_name)
        ks = np.nonzero((labels > 0).reshape(labels.shape[0], -1).any(axis=1))[0]
        log.info("medisam: segment %s with %d voxels on slices %d..%d", segment_id, voxels, ks[0], ks[-1])
        return SegmentationResult(segment_id, voxels, (int(ks[0]), int(ks[-1])), info, notices)

    # -------------------------------------------------------- 3D clicks
    @classmethod
    def guide_array(cls, volume_node, guide_node):  # noqa: ANN001, ANN206
        """``guide_node``'s voxels ``(k, j, i)``, checked to lie on ``volume_node``'s grid (same
        shape and IJK-to-world, its parent transform included): a guide is read voxel by voxel beside the input."""
        import slicer

        guide = slicer.util.arrayFromVolume(guide_node)
        shape = slicer.util.arrayFromVolume(volume_node).shape
        if guide.shape != shape or not np.allclose(cls.ijk_to_world(guide_node), cls.ijk_to_world(volume_node),
                                                   atol=1e-3):
            raise ValueError(f"guide volume {guide_node.GetName()!r} is not on the input volume's grid (shape "
                             f"{guide.shape} vs {shape}): resample it onto the input first")
        return np.ascontiguousarray(guide)

    def add_guide(self, guide_node) -> int:  # noqa: ANN001
        """Give the kept session's 3D clicks another channel (see :meth:`segment`); returns the guides."""
        volume_node, _, _, _ = self._require_kept()
        return self.session.add_guide(self.guide_array(volume_node, guide_node))

    def click(self, points_node, positive: bool = True) -> ClickResult:  # noqa: ANN001
        """Each control point of ``points_node`` -> a 3D corrective click (``click3d``) on the kept session
        (voxel ``(k, j, i)`` rounded); the segment is replaced by the corrected result."""
        volume_node, _, _, _ = self._require_kept()
        voxels = [tuple(int(round(v)) for v in self.ras_to_ijk(volume_node, [p])[0][::-1])
                  for p in _control_points(points_node)]
        if not voxels:
            raise ValueError("place at least one point for the 3D click")
        shape = self.session.info["shape"]
        accepted = rejected = 0
        for zyx in voxels:
            if any(not 0 <= c < n for c, n in zip(zyx, shape)):
                raise ValueError(f"the point at voxel (k, j, i) = {zyx} lies outside the volume {tuple(shape)}")
            out = self.session.add_click(zyx, positive=positive)
            rejected += bool(out["rejected"])
            accepted += not out["rejected"]
            if not out["rejected"]:
                self._clicks.append(int(out["undo_steps"]))
        return ClickResult(accepted, rejected, self._rewrite())

    def undo_click(self) -> int:
        """Take back the last accepted 3D click; returns the segment's voxels after it."""
        self._require_kept()
        if not self._clicks:
            raise ValueError("no 3D click to undo")
        for _ in range(self._clicks.pop()):
            self.session.undo()
        return self._rewrite()

    def close_session(self) -> None:
        """Close the kept server session (if any)."""
        if self.session is not None:
            try:
                self.session.close()
            finally:
                self.session, self.kept = None, None
        self._clicks: list[int] = []

    def _require_kept(self) -> tuple:
        if self.session is None or self.kept is None:
            raise ValueError("segment first with 'keep the session for 3D clicks' on")
        return self.kept

    def _rewrite(self) -> int:
        """Replace the kept segment by the session's current labels (same name); returns its voxels."""
        volume_node, seg_node, segment_id, name = self.kept
        labels = self.session.labels() > 0
        self.place_segmentation(volume_node, seg_node)  # refused before the kept segment is removed, not after
        seg_node.GetSegmentation().RemoveSegment(segment_id)
        new_id = self.write_segment(volume_node, seg_node, labels, name) if labels.any() else segment_id
        self.kept = (volume_node, seg_node, new_id, name)
        return int(labels.sum())

    @classmethod
    def write_segment(cls, volume_node, segmentation_node, mask: np.ndarray, name: str) -> str:  # noqa: ANN001
        """Add ``mask`` (k, j, i) on ``volume_node``'s grid to ``segmentation_node`` as a new segment,
        the segmentation under the volume's parent transform (:meth:`place_segmentation`)."""
        import slicer

        cls.place_segmentation(volume_node, segmentation_node)
        scene = volume_node.GetScene()
        labelmap = slicer.util.addVolumeFromArray(mask.astype(np.uint8), cls.ijk_to_ras(volume_node),
                                                  name=f"{name}-labelmap", nodeClassName="vtkMRMLLabelMapVolumeNode")
        try:
            labelmap.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())  # same frame: no resampling
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
            segmentation = segmentation_node.GetSegmentation()
            before = set(segmentation.GetSegmentIDs())
            logic = slicer.vtkSlicerSegmentationsModuleLogic()
            if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
                raise RuntimeError("Slicer could not import the labelmap into the segmentation")
            new = [s for s in segmentation.GetSegmentIDs() if s not in before]
            if len(new) != 1:
                raise RuntimeError(f"expected one new segment, got {len(new)}")
            segmentation.GetSegment(new[0]).SetName(name)
            cls.code_segment(segmentation.GetSegment(new[0]))
            return new[0]
        finally:
            scene.RemoveNode(labelmap)

    # ------------------------------------------------------------ meaning
    @staticmethod
    def code_segment(segment) -> str | None:  # noqa: ANN001
        """Give a segment the SNOMED CT codes and colour of its name (``"liver"``), as Slicer's terminology.

        Slicer's DICOM-SEG export (dcmqi) writes the terminology entry as the segment's category
        and type codes. Returns None when coded, else why not (unknown name, with close matches);
        the segment then keeps Slicer's defaults.
        """
        from medisam.errors import InputError
        from medisam.io.segment_meaning import lookup

        try:
            meaning = lookup(segment.GetName())
        except InputError as exc:
            log.info("medisam: segment %r keeps Slicer's default terminology: %s", segment.GetName(), exc)
            return str(exc)
        segment.SetTerminology(meaning.slicer_terminology())
        segment.SetColor(*(c / 255.0 for c in meaning.color))
        return None

    @classmethod
    def code_segments(cls, segmentation_node) -> dict[str, str]:  # noqa: ANN001
        """Code every segment of ``segmentation_node`` by its name; returns name -> why not, for the rest."""
        segmentation = segmentation_node.GetSegmentation()
        problems = {}
        for sid in segmentation.GetSegmentIDs():
            segment = segmentation.GetSegment(sid)
            why = cls.code_segment(segment)
            if why is not None:
                problems[segment.GetName()] = why
        return problems
