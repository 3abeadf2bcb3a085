"""The in-memory sam2 inference state has the layout of sam2's own ``init_state``."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medisam.predict import sam2_state
from medisam.predict.sam2_frames import NormalisedFrames


def test_state_matches_sam2_init_state(sam2_tiny, tmp_path):
    net = sam2_tiny.net
    frames = np.random.default_rng(0).integers(0, 255, (3, 24, 40), dtype=np.uint8)
    for i, f in enumerate(frames):  # sam2's init_state reads a folder of JPEG frames
        Image.fromarray(np.dstack([f] * 3)).save(tmp_path / f"{i:05d}.jpg")
    reference = net.init_state(str(tmp_path), offload_video_to_cpu=True)
    ours = sam2_state.new_state(NormalisedFrames(list(frames), int(net.image_size)), 24, 40, sam2_tiny.device)
    assert set(ours) == set(reference)
    for key, value in reference.items():
        if key == "images":
            assert len(ours[key]) == len(value) and tuple(ours[key][0].shape) == tuple(value[0].shape)
        elif key == "cached_features":  # init_state's warm-up encodes frame 0; ours encodes on first use
            assert ours[key] == {} and set(value) <= {0}
        else:
            assert type(ours[key]) is type(value), key
            assert ours[key] == value, key
