"""Qt-free logic of the MedisamSegment 3D Slicer module (importable with slicer-core alone)."""

from MedisamSegmentLib.logic import MedisamSegmentCore, SegmentationResult, geometry_from_ijk_to_ras

__all__ = ["MedisamSegmentCore", "SegmentationResult", "geometry_from_ijk_to_ras"]
