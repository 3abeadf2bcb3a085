"""The synthetic clip of the video tests (CLI, app state, browser): two disks, the second
appearing later, as an MP4 or a DICOM cine loop (one writer for all)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Frame rate of the clip; the overlay video must keep it.
FPS = 12.5
#: Object 1's box on frame 0 and object 2's box on the frame it appears (XYXY pixels).
BOX1, BOX2 = (10, 10, 30, 30), (61, 36, 79, 54)
#: The frame object 2 appears on.
APPEARS = 3


def two_disks(frames: int = 6) -> np.ndarray:
    """``(T, 64, 96)`` uint8 truth labels: disk 1 moves right 4 px a frame, disk 2 appears on frame 3."""
    yy, xx = np.mgrid[:64, :96]
    truth = np.zeros((frames, 64, 96), np.uint8)
    for i in range(frames):
        truth[i][(yy - 20) ** 2 + (xx - 20 - 4 * i) ** 2 <= 9 ** 2] = 1
        if i >= APPEARS:
            truth[i][(yy - 45) ** 2 + (xx - 70) ** 2 <= 8 ** 2] = 2
    return truth


def write_cine(grey: np.ndarray, path: Path, fps: float) -> Path:
    """``(T, Y, X)`` uint8 frames as a multi-frame ultrasound DICOM (cine loop, FrameTime in ms)."""
    from pydicom.uid import UltrasoundMultiFrameImageStorage, generate_uid

    from tests.dicom_factory import new_instance

    ds = new_instance(UltrasoundMultiFrameImageStorage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Patient", "P1", "US"
    ds.NumberOfFrames, ds.FrameTime = grey.shape[0], 1000.0 / fps
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    ds.Rows, ds.Columns = grey.shape[1], grey.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(grey, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_two_disks(folder: Path, kind: str = "mp4") -> tuple[Path, np.ndarray]:
    """The clip as ``clip.mp4`` (H.264) or ``cine.dcm`` in ``folder``; returns (path, truth labels)."""
    from medisam.io.video import write_video

    truth = two_disks()
    grey = np.where(truth > 0, 210, 30).astype(np.uint8)
    if kind == "dicom-cine":
        return write_cine(grey, Path(folder) / "cine.dcm", fps=FPS), truth
    return write_video(np.repeat(grey[..., None], 3, axis=-1), Path(folder) / "clip.mp4", fps=FPS), truth
