"""Video readers and writers: MP4/AVI, frame folders, label frames, overlay MP4, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import InputError, OutputExistsError
from medisam.io import read_image
from medisam.io.video import (is_frame_folder, natural_key, write_label_frames, write_overlay_video,
                              write_video)


def test_mp4_reads_as_grey_video_with_fps(disk_mp4):
    path, masks = disk_mp4
    video = read_image(path)
    assert video.is_video and not video.is_rgb and video.array.shape == (5, 64, 96)
    assert video.array.dtype == np.uint8 and video.source["fps"] == pytest.approx(12.5)
    assert video.source["format"] == "video" and video.num_slices == 5
    # lossy codec, but the disk stays where it was drawn
    assert (video.array[masks] > 150).mean() > 0.95 and (video.array[~masks] < 90).mean() > 0.95


def test_colour_avi_stays_rgb(tmp_path, disk_frames):
    frames, _ = disk_frames
    frames = frames.copy()
    frames[..., 2] = 0  # yellow disk on dark olive: not grey
    write_video(frames, tmp_path / "c.avi", fps=10, codec="mpeg4")
    video = read_image(tmp_path / "c.avi")
    assert video.is_rgb and video.is_video and video.array.shape == (5, 64, 96, 3)
    assert video.source["fps"] == pytest.approx(10)


def test_frame_folder_is_sorted_naturally_and_told_from_dicom(tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((6, 8), i * 10, np.uint8))
    (folder / "README.md").write_text("notes are allowed")
    (folder / "Thumbs.db").write_bytes(b"\0" * 16)  # Windows' thumbnail cache: it made the folder "no DICOM series"
    assert is_frame_folder(folder)
    video = read_image(folder)
    assert video.is_video and video.array.shape == (3, 6, 8)
    assert [int(video.array[t, 0, 0]) for t in range(3)] == [10, 20, 100]
    assert sorted(["f10.png", "f2.png"], key=natural_key) == ["f2.png", "f10.png"]
    (folder / "x.dcm").write_bytes(b"")
    assert not is_frame_folder(folder)


def test_frames_of_different_sizes_are_refused(tmp_path):
    import cv2

    for i, shape in enumerate([(6, 8), (7, 8)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match="differs from the first frame"):
        read_image(tmp_path)


def test_16_bit_frames_keep_their_values(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"t{i:03d}.png"), np.full((4, 5), 1000 * (i + 1), np.uint16))
    video = read_image(tmp_path)
    assert video.array.dtype == np.uint16 and video.array[:, 0, 0].tolist() == [1000, 2000, 3000]


def test_unreadable_and_empty_videos_give_one_line_errors(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name, match in (("bad.mp4", "cannot read video"), ("empty.mp4", "empty file")):
        with pytest.raises(InputError, match=match) as err:
            read_image(tmp_path / name)
        assert "\n" not in str(err.value)


def test_label_frames_round_trip_and_overlay_keeps_fps(tmp_path, disk_mp4):
    path, masks = disk_mp4
    video = read_image(path)
    labels = video.as_labels(masks.astype(np.uint8) * 7)
    out = write_label_frames(labels, tmp_path / "masks")
    back = read_image(out)
    assert np.array_equal(back.array, labels.array)  # PNG frames: label values exact
    with pytest.raises(OutputExistsError):
        write_label_frames(labels, tmp_path / "masks")
    overlay = write_overlay_video(video, labels, tmp_path / "overlay.mp4")
    shown = read_image(overlay)
    assert shown.is_rgb and shown.array.shape == (5, 64, 96, 3)
    assert shown.source["fps"] == pytest.approx(12.5)
    with pytest.raises(OutputExistsError):
        write_overlay_video(video, labels, overlay)


def test_forced_label_frames_hold_this_videos_frames_only(tmp_path):
    """``--force`` over a longer earlier run: 10 new frames over 30 old ones left 20 old frames, read back
    as one 30-frame video (or refused for their size); they are removed, other files stay."""
    from medisam.io.medical_image import MedicalImage

    def label_video(frames):
        arr = np.zeros((frames, 8, 10), np.uint8)
        arr[:, 2:5, 3:7] = 1
        return MedicalImage.from_array(arr, is_rgb=False).as_labels(arr)

    folder = tmp_path / "masks"
    write_label_frames(label_video(30), folder)
    (folder / "notes.txt").write_text("mine")
    write_label_frames(label_video(10), folder, force=True)
    assert sorted(f.name for f in folder.glob("*.png")) == [f"{t:05d}.png" for t in range(10)]
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_grey_video_counts_one_channel_against_the_size_limit(tmp_path):
    """A grey clip keeps one channel: the limit counts that (a 40-frame 2048 x 2048 grey clip was refused as
    503 M voxels for the 168 M it keeps); a colour clip of the same size is still refused, and a clip that
    turns colour part-way is read in colour from its first frame."""
    from medisam.errors import ImageTooLargeError
    from medisam.io.video import write_video

    grey = np.zeros((4, 32, 48), np.uint8)
    grey[:, 8:20, 10:30] = 200
    kept = grey.size  # 6144 voxels
    clip = write_video(grey, tmp_path / "grey.mp4", fps=10)
    image = read_image(clip, max_voxels=kept + 10)
    assert not image.is_rgb and image.array.shape == (4, 32, 48)
    colour = np.repeat(grey[..., None], 3, axis=-1)
    colour[..., 0] = 30  # a red cast: not grey
    with pytest.raises(ImageTooLargeError):
        read_image(write_video(colour, tmp_path / "colour.mp4", fps=10), max_voxels=kept + 10)
    mixed = np.repeat(grey[..., None], 3, axis=-1)
    mixed[2:, ..., 2] = 0  # from frame 2 on, no blue
    image = read_image(write_video(mixed, tmp_path / "mixed.mp4", fps=10))
    assert image.is_rgb and image.array.shape == (4, 32, 48, 3)
    assert np.array_equal(image.array[0, ..., 0], image.array[0, ..., 2])  # frame 0 as decoded, grey in RGB
