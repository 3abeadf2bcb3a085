"""Volume node -> ``medisam serve`` request -> segmentation node, without any Qt.

Coordinate frames: Slicer works in RAS, medisam (ITK, DICOM) in LPS. The conversion
happens in exactly one place, :func:`geometry_from_ijk_to_ras`; everything else works in
voxel indices. ``slicer.util.arrayFromVolume`` gives ``(k, j, i)`` arrays, which is
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


class EmptySegmentationError(RuntimeError):
    """The server answered with an empty mask; nothing was written (shown to the user)."""


@dataclass(frozen=True)
class SegmentationResult:
    """What a run produced: the segment id in the segmentation node and the voxel count per slice range."""

    segment_id: str
    voxels: int
    slices: tuple[int, int]
    session_info: dict


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
    import vtk

    mat = vtk.vtkMatrix4x4()
    vtk_getter(mat)
    return np.array([[mat.GetElement(r, c) for c in range(4)] for r in range(4)])


class MedisamSegmentCore:
    """The module's logic: send a volume and prompts to the server, write the answer into a segmentation.

    Args:
        client: a :class:`medisam.client.Client` connected to ``medisam serve``.
    """

    def __init__(self, client):  # noqa: ANN001
        self.client = client

    # ---------------------------------------------------------- geometry
    @staticmethod
    def ijk_to_ras(volume_node) -> np.ndarray:  # noqa: ANN001
        return _matrix(volume_node.GetIJKToRASMatrix)

    @classmethod
    def ras_to_ijk(cls, volume_node, ras: Sequence[Sequence[float]]) -> np.ndarray:  # noqa: ANN001
        """RAS points (N, 3) -> continuous IJK (N, 3) of ``volume_node``."""
        inv = np.linalg.inv(cls.ijk_to_ras(volume_node))
        pts = np.c_[np.asarray(ras, dtype=float).reshape(-1, 3), np.ones(len(ras))]
        return (inv @ pts.T).T[:, :3]

    @classmethod
    def roi_to_slice_box(cls, volume_node, roi_node) -> tuple[int, tuple[float, float, float, float], tuple[int, int]]:  # noqa: ANN001
        """An ROI (markups ROI) -> (middle slice k, XYXY box in (i, j) pixels, k range), clipped to the volume."""
        b = [0.0] * 6
        roi_node.GetRASBounds(b)
        corners = np.array([[x, y, z] for x in b[0:2] for y in b[2:4] for z in b[4:6]])
        ijk = cls.ras_to_ijk(volume_node, corners)
        nz, ny, nx = volume_node.GetImageData().GetDimensions()[::-1]
        # voxel centres sit at integer IJK; a pixel covers [i - 0.5, i + 0.5]
        i0, j0, k0 = np.floor(ijk.min(axis=0) + 0.5)
        i1, j1, k1 = np.floor(ijk.max(axis=0) + 0.5)
        box = (max(0.0, i0), max(0.0, j0), min(float(nx), i1 + 1), min(float(ny), j1 + 1))
        k_lo, k_hi = int(max(0, k0)), int(min(nz - 1, k1))
        if box[2] <= box[0] or box[3] <= box[1] or k_hi < k_lo:
            raise ValueError("the ROI does not overlap the volume")
        return (k_lo + k_hi) // 2, box, (k_lo, k_hi)

    @classmethod
    def markups_to_points(cls, volume_node, markups_node, label: int) -> list[tuple[int, float, float, int]]:  # noqa: ANN001
        """Control points -> ``(k, x=i, y=j, label)`` with the slice index rounded."""
        out = []
        for n in range(markups_node.GetNumberOfControlPoints()):
            ras = [0.0, 0.0, 0.0]
            markups_node.GetNthControlPointPositionWorld(n, ras)
            i, j, k = cls.ras_to_ijk(volume_node, [ras])[0]
            out.append((int(round(k)), float(i), float(j), label))
        return out

    # --------------------------------------------------------------- run
    def segment(self, volume_node, segmentation_node, roi_node=None, positive_node=None,  # noqa: ANN001, PLR0913
                negative_node=None, *, propagate: bool = True, modality: str | None = None,
                window: str | None = None, box3d: bool = True, segment_name: str = "medisam") -> SegmentationResult:
        """Segment one object from an ROI (box) and/or point markups; add it as a segment.

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
        if roi_node is None and not any(p[3] == 1 for p in points):
            raise ValueError("place an ROI or at least one positive point")
        with self.client.open_session(np.ascontiguousarray(array), spacing=spacing, origin=origin,
                                      direction=direction, modality=modality, window=window) as session:
            k_range = (0, array.shape[0] - 1)
            if roi_node is not None:
                k, box, k_range = self.roi_to_slice_box(volume_node, roi_node)
            else:
                k, box = points[0][0], None
            on_slice = [(x, y, lab) for kk, x, y, lab in points if kk == k]
            done = set()
            if box is not None and box3d and array.shape[0] > 1:
                session.add_box3d(box=box, slice_range=k_range)  # the server picks the seed slice
            else:
                session.predict(slice=k, box=box, points=on_slice or None)
                done.add(k)
            for kk in sorted({p[0] for p in points} - done):
                session.add_points(slice=kk, points=[(x, y, lab) for k2, x, y, lab in points if k2 == kk])
            if propagate and array.shape[0] > 1:
                session.propagate()
            labels = session.labels()
            info = dict(session.info)
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
        ks = np.nonzero((labels > 0).reshape(labels.shape[0], -1).any(axis=1))[0]
        log.info("medisam: segment %s with %d voxels on slices %d..%d", segment_id, voxels, ks[0], ks[-1])
        return SegmentationResult(segment_id, voxels, (int(ks[0]), int(ks[-1])), info)

    @classmethod
    def write_segment(cls, volume_node, segmentation_node, mask: np.ndarray, name: str) -> str:  # noqa: ANN001
        """Add ``mask`` (k, j, i) on ``volume_node``'s grid to ``segmentation_node`` as a new segment."""
        import slicer

        scene = volume_node.GetScene()
        labelmap = slicer.util.addVolumeFromArray(mask.astype(np.uint8), cls.ijk_to_ras(volume_node),
                                                  name=f"{name}-labelmap", nodeClassName="vtkMRMLLabelMapVolumeNode")
        try:
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
