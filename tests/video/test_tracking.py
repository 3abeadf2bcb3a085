"""Multi-object tracking rules (medisam.predict.tracking): identity, one label per pixel,
objects that appear later, divide or leave, and frames encoded once.

The rules are tested with an "oracle" segmenter (bright pixels inside the prompt box) in
place of the decoder, so the outcome depends on the tracking logic only; the tiny
random-weight model still encodes every frame. The last tests run the tiny model end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.models.transform import InputTransform
from medisam.predict.predictor import Prediction
from medisam.predict.tracking import Candidate, TrackingConfig, TrackingSession, largest_part, resolve_frame
from medisam.predict.video import VideoSession
from medisam.prompts import Box

H, W = 64, 96
#: The box chain with SAM's candidates and motion (the rules' tests: boxes that reach into neighbours).
CHAIN = dict(extent="previous", candidates=("multimask",), motion=True)


def disks(t: int, centres: list[list[tuple[float, float] | None]], radius: float = 7) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` uint8 frames and truth labels; ``centres[k][t]`` = (x, y) of object k+1 or None."""
    yy, xx = np.mgrid[:H, :W]
    truth = np.zeros((t, H, W), dtype=np.uint8)
    for k, path in enumerate(centres):
        for i, c in enumerate(path):
            if c is not None:
                truth[i][(yy - c[1]) ** 2 + (xx - c[0]) ** 2 <= radius ** 2] = k + 1
    return np.where(truth > 0, 200, 20).astype(np.uint8), truth


def oracle(session: TrackingSession, frames: np.ndarray) -> TrackingSession:
    """Replace the decoder by 'bright pixels inside the box' (the encoder still runs)."""
    current = {}
    encode = session._encode

    def tracked_encode(t: int, interpolate: bool = False, fine: bool = False, obj_id: int | None = None) -> None:
        current["t"] = t
        encode(t, interpolate)

    def predict(box=None, points=None, mask=None, multimask=False) -> Prediction:
        b = Box.of(box)
        m = np.zeros((H, W), dtype=bool)
        rows, cols = slice(int(b.y0), int(np.ceil(b.y1))), slice(int(b.x0), int(np.ceil(b.x1)))
        m[rows, cols] = frames[current["t"]][rows, cols] > 100
        n = 3 if multimask else 1
        transform = session.predictor._require_image().transform
        logits = transform.mask_to_low_res(m, session.model.mask_input_size)
        return Prediction(np.repeat(m[None], n, 0), np.ones(n, np.float32), np.repeat(logits[None], n, 0))

    session._encode = tracked_encode
    session.predictor.predict = predict
    return session


def session_for(tiny_model, frames, config=None) -> TrackingSession:
    return oracle(VideoSession(tiny_model, frames, tracking=config).session, frames)


def box_of(truth: np.ndarray, label: int) -> Box:
    return Box.from_mask(truth == label, margin=1)


def test_objects_appearing_later_each_frame_encoded_once(tiny_model):
    frames, truth = disks(6, [[(20 + 3 * i, 20) for i in range(6)],
                              [(70 - 3 * (i - 2), 44) if i >= 2 else None for i in range(6)]])
    session = session_for(tiny_model, frames, TrackingConfig(margin=12, **CHAIN))  # 4.5 px: more than a step
    session.add_box(0, box_of(truth[0], 1), obj_id=1)
    session.add_box(2, box_of(truth[2], 2), obj_id=2)
    assert session.planned_slices("forward") == 6 + 4
    results = list(session.iter_propagate("forward"))
    assert [(r.slice, r.obj_id) for r in results] == [(0, 1), (1, 1)] + [(t, o) for t in range(2, 6) for o in (1, 2)]
    assert session.encoded_slices == set(range(6)) and session.predictor.cache.misses == 6
    assert sorted(session.results(2)) == [2, 3, 4, 5] and sorted(session.results(1)) == list(range(6))
    labels = session.label_map().array
    for t in range(6):
        for obj in (1, 2):
            assert (labels[t] == obj).sum() == (truth[t] == obj).sum()
    assert list(session.iter_propagate("forward")) == []  # nothing left to compute


def test_neighbours_passing_close_keep_their_identity_and_pixels(tiny_model):
    # two disks pass each other 2 px apart: each box (margin 4.5 px) reaches into the neighbour
    frames, truth = disks(8, [[(20 + 3 * i, 26) for i in range(8)], [(60 - 3 * i, 43) for i in range(8)]])
    session = session_for(tiny_model, frames, TrackingConfig(margin=12, **CHAIN))
    session.add_box(0, box_of(truth[0], 1), obj_id=1)
    session.add_box(0, box_of(truth[0], 2), obj_id=2)
    labels = session.propagate("forward", progress=False).array
    np.testing.assert_array_equal(labels, truth)


def test_prompt_wins_and_duplicate_track_stops():
    t = InputTransform.for_image(H, W, 96, "longest")
    a = np.zeros((H, W), bool)
    a[10:30, 10:30] = True
    b = np.zeros((H, W), bool)
    b[12:30, 10:30] = True  # IoU 0.9 with a: the same object
    lo = t.mask_to_low_res(a, 96)
    out = resolve_frame({1: Candidate(a, lo, 0.9, False, a), 2: Candidate(b, lo, 0.9, True)}, t, TrackingConfig())
    assert out[1][1] == "merged" and not out[1][0].any()
    assert out[2][1] is None and out[2][0].sum() == b.sum()
    # without a prompt, the one that overlaps its own previous mask more keeps it
    shifted = np.roll(a, 8, axis=1)
    out = resolve_frame({1: Candidate(a, lo, 0.9, False, shifted), 2: Candidate(b, lo, 0.9, False, b)}, t,
                        TrackingConfig())
    assert out[1][1] == "merged" and out[2][1] is None


def test_contested_pixels_go_to_the_higher_logit_or_the_prompt():
    t = InputTransform.for_image(H, W, 96, "longest")
    a = np.zeros((H, W), bool)
    a[10:30, 10:40] = True
    b = np.zeros((H, W), bool)
    b[10:30, 30:60] = True  # 10 columns shared, IoU 0.2
    la = np.where(a, 5.0, -5.0).astype(np.float32)
    lb = np.where(b, 8.0, -5.0).astype(np.float32)
    lo = np.zeros((96, 96), np.float32)
    la_lo, lb_lo = lo.copy(), lo.copy()
    la_lo[:H, :W], lb_lo[:H, :W] = la, lb
    out = resolve_frame({1: Candidate(a, la_lo, 0.9, False), 2: Candidate(b, lb_lo, 0.9, False)}, t,
                        TrackingConfig())
    assert out[2][0][10:30, 30:40].all() and not out[1][0][10:30, 30:40].any()
    assert not np.logical_and(out[1][0], out[2][0]).any() and out[1][0].sum() == 20 * 20
    out = resolve_frame({1: Candidate(a, la_lo, 0.9, True), 2: Candidate(b, lb_lo, 0.9, False)}, t,
                        TrackingConfig())
    assert out[1][0][10:30, 30:40].all() and not out[2][0][10:30, 30:40].any()


def test_prompt_inside_a_tracked_object_ends_it_as_divided():
    """A new object prompted inside a propagated object's prediction is its daughter: the parent ends."""
    t = InputTransform.for_image(H, W, 96, "longest")
    parent = np.zeros((H, W), bool)
    parent[10:30, 10:50] = True  # the dividing cell, predicted as one blob
    daughter = np.zeros((H, W), bool)
    daughter[12:28, 12:28] = True  # prompted inside it (IoU 0.32: not the same object)
    lo = t.mask_to_low_res(parent, 96)
    cands = {1: Candidate(parent, lo, 0.9, False, parent), 2: Candidate(daughter, lo, 0.9, True)}
    out = resolve_frame(cands, t, TrackingConfig())
    assert out[1][1] == "divided" and not out[1][0].any()
    assert out[2][1] is None and out[2][0].sum() == daughter.sum()
    out = resolve_frame(cands, t, TrackingConfig(divide=False))  # the parent keeps the rest
    assert out[1][1] is None and out[1][0].sum() == parent.sum() - daughter.sum()


def test_division_continues_as_larger_part_and_daughter_is_a_new_object(tiny_model):
    # a disk divides on frame 3 into a larger (left) and a smaller (right) daughter, 2 px apart
    yy, xx = np.mgrid[:H, :W]
    truth = np.zeros((6, H, W), np.uint8)
    truth[:3, (yy - 32) ** 2 + (xx - 40) ** 2 <= 9 ** 2] = 1
    truth[3:, (yy - 32) ** 2 + (xx - 36) ** 2 <= 6 ** 2] = 1
    truth[3:, (yy - 32) ** 2 + (xx - 47) ** 2 <= 3 ** 2] = 2
    frames = np.where(truth > 0, 200, 20).astype(np.uint8)
    session = session_for(tiny_model, frames)
    session.add_box(0, box_of(truth[0], 1), obj_id=1)
    labels = session.propagate("forward", progress=False).array
    np.testing.assert_array_equal(labels, truth == 1)  # the larger daughter only
    session.add_box(3, box_of(truth[3], 2), obj_id=2)  # the other daughter, prompted where it appears
    assert session.planned_slices("forward") == 3 * 2  # frames 3..5 are redone, 0..2 kept
    labels = session.propagate("forward", progress=False).array
    np.testing.assert_array_equal(labels, truth)


def test_object_leaving_stops_and_both_directions(tiny_model):
    frames, truth = disks(10, [[(72 + 4 * i, 30) for i in range(10)]])  # gone from frame 8 on
    session = session_for(tiny_model, frames, TrackingConfig(margin=12, **CHAIN))
    session.add_box(2, box_of(truth[2], 1), obj_id=1)
    labels = session.propagate("both", progress=False).array
    results = session.results(1)
    assert sorted(results) == list(range(9))
    assert [t for t, r in results.items() if r.stop] == [8] and results[8].stop == "left"
    np.testing.assert_array_equal(labels, truth)


def test_prompt_sized_box_keeps_the_extent_the_user_drew(tiny_model):
    """The user boxes part of a uniform region: the default box keeps that size (it follows the
    whole object's size, but the whole object's mask fills the chain's box: its size is the
    box's, not the object's); so does ``size="prompt"``; the box chain
    (previous mask's box + margin) creeps outwards by the margin on every frame."""
    frames = np.full((5, H, W), 20, np.uint8)
    frames[:, 10:54, 10:86] = 200  # a large bright region, no edge near the box
    drawn = Box(40, 24, 56, 40)  # 16 x 16 px inside it
    areas = {}
    configs = {"default": None, "prompt": TrackingConfig(size="prompt"),
               "chain": TrackingConfig(extent="previous", margin=3, candidates=("box",))}
    for name, config in configs.items():
        session = session_for(tiny_model, frames, config)
        session.add_box(0, drawn, obj_id=1)
        labels = session.propagate("forward", progress=False).array
        areas[name] = [int((labels[t] == 1).sum()) for t in range(5)]
    assert areas["default"] == [16 * 16] * 5
    assert areas["prompt"] == [16 * 16] * 5
    assert areas["chain"][0] == 16 * 16 and areas["chain"][-1] > 2 * 16 * 16


def test_largest_part():
    m = np.zeros((10, 10), bool)
    m[0:2, 0:2] = True
    m[5:9, 5:9] = True
    assert largest_part(m).sum() == 16 and not largest_part(m)[0, 0]


def test_tiny_model_end_to_end_one_label_per_pixel(tiny_model):
    frames, truth = disks(5, [[(20 + 4 * i, 24) for i in range(5)], [None, (70, 40), (66, 40), (62, 40), (58, 40)]])
    # the random weights' masks are noise, which the lost rule (rule 6) may rightly end: off, every frame is tracked
    no_lost = TrackingConfig(lost_area=None, lost_contrast=None)
    session = VideoSession(tiny_model, np.repeat(frames[..., None], 3, axis=-1), tracking=no_lost)
    session.add_box(0, box_of(truth[0], 1), obj_id=1)
    session.add_box(1, box_of(truth[1], 2), obj_id=2)
    labels = session.propagate("forward", progress=False).array
    assert labels.shape == (5, H, W) and set(np.unique(labels)) <= {0, 1, 2}
    assert not (labels[0] == 2).any()  # object 2 appears on frame 1
    assert session.session.encoded_slices == set(range(5))
    session.undo()  # back to object 1 only
    assert session.object_ids == [1]
    with pytest.raises(InputError, match="direction"):
        session.propagate("sideways")


@pytest.mark.real_weights
@pytest.mark.real_data
@pytest.mark.slow
def test_litemedsam_tracks_every_gowt1_nucleus(real_model, gowt1):
    """All nuclei of GOWT1 frames 15-18 in one session; track 22 (a daughter of 16) begins on frame 17."""
    from medisam.metrics_basic import dice

    video, tracks = gowt1
    truth = tracks[15:19]
    session = VideoSession(real_model, video.with_array(video.array[15:19]))
    starts = {}
    for label in sorted(int(v) for v in np.unique(truth) if v):
        first = next(t for t in range(4) if (truth[t] == label).any())
        starts[label] = first
        session.add_box(first, Box.from_mask(truth[first] == label), obj_id=label)
    assert starts[22] == 2
    labels = session.propagate("forward", progress=False).array
    assert session.session.encoded_slices == {0, 1, 2, 3}
    assert not (labels[:2] == 22).any()
    scores = []
    for label, first in starts.items():
        for t in range(first, 4):
            if (truth[t] == label).any():
                scores.append(dice(labels[t] == label, truth[t] == label))
                hits = np.bincount(truth[t][labels[t] == label], minlength=256)
                assert hits[label] == hits[1:].max(), (label, t)  # no identity switch
    assert np.mean(scores) > 0.65, np.mean(scores)


def _scripted_segmenter(session, disks: list[np.ndarray], roll: int = 0, spill: bool = False) -> None:
    """Replace the session's decoder by a script on frames of one disk (``disks[t]``): a box's
    mask is the disk's part inside it, moved ``roll`` px up; with ``spill`` the whole disk
    (SAM's mask leaving its box)."""
    frame = {"t": 0}
    encode = session._encode

    def encode_and_note(t: int, interpolate: bool = False, fine: bool = False, obj_id: int | None = None) -> None:
        # the script decides every mask, and every frame has the same size, hence the same
        # transform: the encoder runs on frame 0 only (once, then cached) to keep the test fast
        frame["t"] = t
        encode(0, False)

    def predict(box=None, points=None, mask=None, multimask=False) -> Prediction:
        b, disk = Box.of(box), disks[frame["t"]]
        m = np.zeros_like(disk)
        rows, cols = slice(int(b.y0), int(np.ceil(b.y1))), slice(int(b.x0), int(np.ceil(b.x1)))
        m[rows, cols] = disk[rows, cols]
        m = disk.copy() if spill and m.any() else np.roll(m, -roll, axis=0)
        logits = session.predictor._require_image().transform.mask_to_low_res(m, session.model.mask_input_size)
        n = 3 if multimask else 1
        return Prediction(np.repeat(m[None], n, 0), np.ones(n, np.float32), np.repeat(logits[None], n, 0))

    session._encode = encode_and_note
    session.predictor.predict = predict


def _disks(radii, side: int = 512) -> list[np.ndarray]:
    yy, xx = np.mgrid[:side, :side]
    return [(yy - side // 2) ** 2 + (xx - side // 2) ** 2 <= r ** 2 for r in radii]


def _frames(disks: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.where(d, 200, 20).astype(np.uint8) for d in disks])


def _drift_of_inner_box(tiny_model, centre: str) -> float:
    """Pixels the mask's centre ends off a still disk's centre after 23 frames, tracked from a
    box of the disk's inner part by a segmenter biased one pixel upwards (the chain's looser
    box is 6 px wider on this 512 px frame: it covers the whole disk)."""
    half = 31
    disks = _disks([36] * 24)
    session = VideoSession(tiny_model, _frames(disks), tracking=TrackingConfig(centre=centre)).session
    _scripted_segmenter(session, disks, roll=1)
    session.add_box(0, Box(256 - half, 256 - half, 256 + half, 256 + half), obj_id=1)
    last = [r for r in session.iter_propagate("forward")][-1]
    ys, xs = np.nonzero(last.mask)
    return float(np.hypot(xs.mean() - 256, ys.mean() - 256))


def _last_mask(tiny_model, disks: list[np.ndarray], box: Box, spill: bool, **config) -> np.ndarray:
    session = VideoSession(tiny_model, _frames(disks), tracking=TrackingConfig(**config)).session
    _scripted_segmenter(session, disks, spill=spill)
    session.add_box(0, box, obj_id=1)
    return [r for r in session.iter_propagate("forward")][-1].mask


def test_tracked_masks_stay_within_a_box_of_the_prompts_size(tiny_model):
    """A box of a disk's inner part, and a segmenter whose mask spills out to the whole disk:
    clipped (the default), the tracked mask keeps the extent the user drew."""
    disks, half = _disks([36] * 12), 20
    box = Box(256 - half, 256 - half, 256 + half, 256 + half)
    clipped = _last_mask(tiny_model, disks, box, spill=True)
    ys, xs = np.nonzero(clipped)
    assert xs.max() - xs.min() <= 2 * half and ys.max() - ys.min() <= 2 * half  # box edges round outwards
    assert clipped.sum() > 0.9 * (2 * half) ** 2  # the disk's part inside that box, not less
    assert _last_mask(tiny_model, disks, box, spill=True, clip=None).sum() == disks[-1].sum()


def test_a_growing_object_is_followed_by_its_whole_size(tiny_model):
    """A disk growing from radius 20 to 50, segmented inside its box: a box of the prompt's size
    (``size="prompt"``) caps the mask; scaled by the whole object's growth (the default) it follows."""
    disks = _disks(np.linspace(20, 50, 24))
    box = Box.from_mask(disks[0])
    for spill in (False, True):
        followed = _last_mask(tiny_model, disks, box, spill=spill)
        assert followed.sum() > 0.95 * disks[-1].sum(), spill
    assert _last_mask(tiny_model, disks, box, spill=False, size="prompt").sum() < 0.3 * disks[-1].sum()
    with pytest.raises(InputError, match="size"):
        TrackingConfig(size="grow")
    with pytest.raises(InputError, match="clip"):
        TrackingConfig(clip=-1.0)


def test_a_new_prompt_reruns_to_what_a_fresh_session_gives(tiny_model):
    """A growing disk tracked alone, then a second object prompted on frame 3: the re-run of
    frames 3.. reads the whole-object state of frame 2 from the first run and ends where a
    session given both prompts at once ends."""
    grown, other = _disks(np.linspace(20, 44, 12)), _disks([10] * 12, side=512)
    disks = [g | np.roll(o, 180, axis=1) for g, o in zip(grown, other)]
    boxes = {1: (0, Box.from_mask(grown[0])), 2: (3, Box.from_mask(np.roll(other[3], 180, axis=1)))}

    def session_with(objects):
        session = VideoSession(tiny_model, _frames(disks)).session
        _scripted_segmenter(session, disks)
        for obj_id in objects:
            session.add_box(boxes[obj_id][0], boxes[obj_id][1], obj_id=obj_id)
        return session

    stepwise = session_with([1])
    stepwise.propagate("forward", progress=False)
    stepwise.add_box(boxes[2][0], boxes[2][1], obj_id=2)
    again = stepwise.propagate("forward", progress=False).array
    fresh = session_with([1, 2]).propagate("forward", progress=False).array
    assert (again == 1).sum() > 0.9 * (fresh == 1).sum() > 0  # it grew with the disk
    np.testing.assert_array_equal(again, fresh)


def test_a_box_smaller_than_its_object_is_pulled_back_to_the_object(tiny_model):
    """Centred on its own previous mask, a box inside a larger object follows the segmenter's
    bias across it; centred on (halfway to, the default) the whole object's mask it is pulled back."""
    drift = {c: _drift_of_inner_box(tiny_model, c) for c in ("previous", "between", "chain")}
    assert drift["chain"] < drift["between"] < drift["previous"] - 1, drift
    assert TrackingConfig().centre == "between"
    with pytest.raises(InputError, match="centre"):
        TrackingConfig(centre="middle")


def test_a_box_prompts_mask_is_the_candidate_that_fills_the_box(tiny_model):
    """A segmenter whose single output is the right half of the boxed disk and whose multimask
    outputs include the whole: the prompt frame takes the mask that fills the drawn box
    (``fit``, the default), in what the prompt returns and in the label map; ``fit=False`` keeps
    the single output, and a prompt with clicks keeps it too."""
    disks = _disks([36] * 3)
    box = Box.from_mask(disks[0])
    right = disks[0] & (np.arange(512) >= 256)[None, :]

    def session_with(**config) -> TrackingSession:
        session = VideoSession(tiny_model, _frames(disks), tracking=TrackingConfig(**config)).session
        _scripted_segmenter(session, disks)
        whole_or_parts = session.predictor.predict

        def predict(box=None, points=None, mask=None, multimask=False) -> Prediction:
            pred = whole_or_parts(box=box, points=points, mask=mask, multimask=multimask)
            masks = np.stack([disks[0], right, right & (np.arange(512) >= 300)[:, None]]) if multimask else right[None]
            return Prediction(masks, pred.scores, pred.low_res_logits)

        session.predictor.predict = predict
        return session

    fitted = session_with()
    np.testing.assert_array_equal(fitted.add_box(0, box, obj_id=1).mask, disks[0])
    assert (fitted.propagate("forward", progress=False).array[0] == 1).sum() == disks[0].sum()
    single = session_with(fit=False)
    np.testing.assert_array_equal(single.add_box(0, box, obj_id=1).mask, right)
    clicked = session_with()
    clicked.add_box(0, box, obj_id=1)
    np.testing.assert_array_equal(clicked.add_points(0, [(300, 256, 1)], obj_id=1).mask, right)


def test_propagate_prints_the_tracking_cost_first(tiny_model, capsys):
    """Before the work: objects, frames, encodings still to do and decoder passes (2 per object
    and frame by default); nothing when every frame is already tracked."""
    frames, _ = disks(6, [[(20 + t, 32) for t in range(6)], [None, None] + [(60, 32)] * 4])
    session = VideoSession(tiny_model, frames)
    session.add_box(0, Box(10, 22, 30, 42), obj_id=1)
    session.add_box(2, Box(50, 22, 70, 42), obj_id=2)
    session.propagate("forward")
    err = capsys.readouterr().err
    assert "tracking 2 object(s) over 6 frame(s) (0-5): up to 4 encodings and 20 decoder passes " \
           "(10 object-frames x 2)" in err
    assert TrackingConfig(candidates=("box", "chain", "mask-prompt")).decoder_passes == 3
    assert TrackingConfig(extent="previous", candidates=("box",)).decoder_passes == 1
    session.propagate("forward")
    assert "tracking" not in capsys.readouterr().err


@pytest.mark.parametrize("candidates", [("box", "chain"), ("box", "mask-prompt")])
def test_tracked_frames_hold_no_decoder_batch(tiny_model, candidates):
    """Memory per tracked object-frame: a tracked result held a view of its decoder batch's logits
    (3 x 256 KiB), 0.73 MB per object-frame growing with the video (600 frames x 3 objects: 3 GB).
    Logits are kept only where the next frame is prompted with them, as their own array."""
    frames, truth = disks(6, [[(20 + 4 * i, 24) for i in range(6)]])
    session = session_for(tiny_model, frames, TrackingConfig(candidates=candidates))
    session.add_box(0, box_of(truth[0], 1), obj_id=1)
    session.propagate("forward", progress=False)
    tracked = [r for t, r in session.results(1).items() if r.source == "propagated"]
    assert len(tracked) == 5
    for r in tracked:
        if "mask-prompt" in candidates:
            assert r.low_res_logits is not None and r.low_res_logits.base is None  # its own 256 KiB, no batch
        else:
            assert r.low_res_logits is None
