"""Rule 6 of the tracker (medisam.predict.tracking_rules): an object that vanishes or leaves the
frame stops (``stop="lost"``), its mask is empty from there on, and the track says where it ended.

SAM always answers something inside the box it is given; the session tests replace the decoder by
a segmenter that does the same ("SAM-like": the bright pixels inside the box, else a blob in the
middle of the box), so the outcome depends on the tracking rules only (the tiny random-weight model
still encodes every frame).
"""

from __future__ import annotations


import numpy as np
import pytest

from medisam.predict.predictor import Prediction
from medisam.predict.tracking import Candidate, TrackingConfig, TrackingSession, resolve_frame
from medisam.predict.tracking_rules import Look, is_lost, look_of
from medisam.predict.video import VideoSession
from medisam.prompts import Box

H, W, R = 64, 96, 8
#: The lost rule off: the tracker before it.
OFF = TrackingConfig(lost_area=None, lost_contrast=None)


def clip(centres: list[list[tuple[float, float] | None]]) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` uint8 noisy frames of bright disks and their truth labels; ``centres[k][t]``:
    (x, y) of object k+1 on frame t, None where it is gone (a disk may also lie outside the frame)."""
    yy, xx = np.mgrid[:H, :W]
    truth = np.zeros((len(centres[0]), H, W), np.uint8)
    for k, path in enumerate(centres):
        for t, c in enumerate(path):
            if c is not None:
                truth[t][(yy - c[1]) ** 2 + (xx - c[0]) ** 2 <= R ** 2] = k + 1
    noise = np.random.default_rng(0).normal(0, 4, truth.shape)
    return np.clip(np.where(truth > 0, 200, 30) + noise, 0, 255).astype(np.uint8), truth


def stands_out(pixels: np.ndarray) -> np.ndarray:
    """What the scripted decoder takes in its box: bright pixels (grey), red ones (colour: red over green)."""
    if pixels.ndim == 2:
        return pixels > 100
    return (pixels[..., 0].astype(int) - pixels[..., 1] > 90) | (pixels.min(axis=-1) > 160)  # or bright grey


def sam_like(session: TrackingSession, frames: np.ndarray) -> TrackingSession:
    """Replace the decoder by 'the bright (red) pixels inside the box, else a blob in its middle'."""
    current = {}
    encode = session._encode
    yy, xx = np.mgrid[:H, :W]

    def tracked_encode(t: int, interpolate: bool = False, fine: bool = False, obj_id: int | None = None) -> None:
        current["t"] = t
        encode(t, interpolate)

    def predict(box=None, points=None, mask=None, multimask=False) -> Prediction:
        b = Box.of(box)
        rows, cols = slice(int(b.y0), int(np.ceil(b.y1))), slice(int(b.x0), int(np.ceil(b.x1)))
        m = np.zeros((H, W), dtype=bool)
        m[rows, cols] = stands_out(frames[current["t"]][rows, cols])
        if not m.any():  # SAM always answers something inside its box
            r = max(1.0, min(b.x1 - b.x0, b.y1 - b.y0) / 3)
            m = (yy - (b.y0 + b.y1) / 2) ** 2 + (xx - (b.x0 + b.x1) / 2) ** 2 <= r ** 2
        n = 3 if multimask else 1
        logits = session.predictor._require_image().transform.mask_to_low_res(m, session.model.mask_input_size)
        return Prediction(np.repeat(m[None], n, 0), np.ones(n, np.float32), np.repeat(logits[None], n, 0))

    session._encode = tracked_encode
    session.predictor.predict = predict
    return session


#: Colour frames: red disks on pink of the same grey level (channel mean 150), which differ only in hue
#: (a polyp on mucosa).
PINK, RED = (190, 130, 130), (230, 110, 110)


def colour_clip(centres: list[list[tuple[float, float] | None]]) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W, 3)`` uint8 noisy pink frames of red disks and their truth labels (``centres`` as :func:`clip`)."""
    _, truth = clip(centres)
    noise = np.random.default_rng(0).normal(0, 4, truth.shape + (3,))
    return np.clip(np.where(truth[..., None] > 0, RED, PINK) + noise, 0, 255).astype(np.uint8), truth


def tracked(tiny_model, frames, truth, config=None) -> TrackingSession:
    """Every object boxed (tight) on its first frame, tracked forward."""
    session = sam_like(VideoSession(tiny_model, frames, tracking=config).session, frames)
    for obj in range(1, int(truth.max()) + 1):
        first = next(t for t in range(len(truth)) if (truth[t] == obj).any())
        session.add_box(first, Box.from_mask(truth[first] == obj), obj_id=obj)
    session.propagate("forward", progress=False)
    return session


# ----------------------------------------------------------------- the rule itself
def test_look_of_an_object_and_of_nothing():
    frames, truth = clip([[(40, 30)]])
    disk = look_of(frames[0], truth[0] == 1)
    assert disk.area == (truth[0] == 1).sum() and disk.contrast == pytest.approx(170, abs=3)
    blob = np.zeros((H, W), bool)
    blob[5:12, 70:80] = True  # a mask on the background: no contrast with its surroundings
    assert abs(look_of(frames[0], blob).contrast) < 3
    assert look_of(frames[0], np.zeros((H, W), bool)) is None


def test_is_lost_by_contrast_or_area_against_the_recent_look():
    recent, cfg = Look(200.0, 170.0), TrackingConfig()
    assert not is_lost(Look(180.0, 150.0), recent, cfg)  # the object, a little changed
    assert is_lost(Look(180.0, 2.0), recent, cfg)  # the same box on background: it vanished
    assert is_lost(Look(180.0, -40.0), recent, cfg)  # contrast reversed: not the object
    assert is_lost(Look(20.0, 170.0), recent, cfg)  # a sliver of the recent area
    assert not is_lost(Look(20.0, 2.0), recent, OFF)  # the rule off
    assert not is_lost(Look(20.0, 2.0), None, cfg)  # no recent look (a prompt frame)
    assert not is_lost(None, recent, cfg)  # an empty mask is rule 5's ("left")


def test_look_of_a_colour_only_object_on_colour_frames():
    """A red disk on pink of its grey level: no contrast on the grey frame, 28 levels in colour (RMS over
    channels); a grey frame shown in colour (R = G = B) has the grey frame's contrast."""
    frames, truth = colour_clip([[(40, 30)]])
    disk = truth[0] == 1
    look = look_of(frames[0], disk)
    assert look.colour == pytest.approx((40, -20, -20), abs=1.5)
    assert look.contrast == pytest.approx(np.sqrt((40 ** 2 + 20 ** 2 + 20 ** 2) / 3), abs=1.5)  # 28.3
    assert abs(look_of(frames[0].mean(axis=-1), disk).contrast) < 1.5  # the grey frame sees nothing
    grey = clip([[(40, 30)]])[0][0]
    assert look_of(grey, disk).colour is None
    shown = look_of(np.repeat(grey[..., None], 3, axis=-1), disk)
    assert shown.contrast == pytest.approx(look_of(grey, disk).contrast)


def test_is_lost_on_colour_frames_compares_colours():
    """The colour difference of a mask is projected on the track's recent one: a vanished object (no
    difference) and another object as far from the surroundings in another hue both stop the track."""
    recent, cfg = Look(200.0, 28.3, colour=(40.0, -20.0, -20.0)), TrackingConfig()
    assert not is_lost(Look(190.0, 26.2, colour=(37.0, -18.0, -19.0)), recent, cfg)  # still the red disk
    assert is_lost(Look(190.0, 0.5, colour=(0.5, 0.4, -0.6)), recent, cfg)  # pink: the disk vanished
    assert is_lost(Look(190.0, 28.3, colour=(-20.0, 40.0, -20.0)), recent, cfg)  # green: not the object
    recent = Look(200.0, 28.3, at_edge=False).recent(Look(200.0, 28.3))
    assert recent.colour is None and recent.contrast == 28.3  # grey looks stay grey


def test_a_lost_candidate_is_empty_stops_and_takes_no_pixels():
    a, b = np.zeros((H, W), bool), np.zeros((H, W), bool)
    a[10:30, 10:30], b[20:40, 20:40] = True, True
    out = resolve_frame({1: Candidate(a.copy(), None, 1.0, False, a, lost=True),
                         2: Candidate(b.copy(), None, 1.0, False, b)}, None, TrackingConfig())
    assert out[1][1] == "lost" and not out[1][0].any()
    assert out[2][1] is None and np.array_equal(out[2][0], b)  # its overlap with the lost one stays its


# ----------------------------------------------------------------- tracking
VANISH = 4


def test_a_vanishing_object_stops_and_its_mask_stays_empty(tiny_model):
    """Disk 1 vanishes on frame 4, disk 2 stays: 1 is empty from frame 4 on and stops there; 2 goes on."""
    frames, truth = clip([[(25 + 2 * t, 30) if t < VANISH else None for t in range(8)],
                          [(70, 35 + t) for t in range(8)]])
    session = tracked(tiny_model, frames, truth)
    labels = session.label_map().array
    assert not (labels[VANISH:] == 1).any()
    results = session.results(1)
    assert results[VANISH].stop == "lost" and max(results) == VANISH  # the track ends: nothing after it
    assert all((labels[t] == 2).sum() > 0.8 * (truth[t] == 2).sum() for t in range(8))  # the other is not dropped
    assert any(n.startswith(f"object 1 lost (no longer seen) at frame {VANISH}, last seen around x=31, y=30")
               for n in session.notices), list(session.notices)
    # the fault: without the rule SAM's answer in the empty box goes on as a made-up mask
    before = tracked(tiny_model, frames, truth, OFF).label_map().array
    assert all((before[t] == 1).any() for t in range(VANISH, 8))


def test_an_object_leaving_the_frame_stops_when_it_is_gone(tiny_model):
    """A disk moving right 6 px a frame leaves the frame; on the frames it is gone its mask is empty."""
    frames, truth = clip([[(60 + 6 * t, 30) for t in range(10)]])  # centre past W + R from frame 7
    session = tracked(tiny_model, frames, truth)
    labels = session.label_map().array
    gone = [t for t in range(10) if not truth[t].any()]
    assert gone and not labels[gone].any()
    stops = [(t, r.stop) for t, r in session.results(1).items() if r.stop]
    assert len(stops) == 1 and stops[0][1] in ("lost", "left") and stops[0][0] <= gone[0]
    for t in range(gone[0] - 1):  # the frames it is still well in the frame are kept
        assert (labels[t] == 1).sum() >= 0.8 * (truth[t] == 1).sum(), t


def test_a_new_prompt_resumes_a_lost_object(tiny_model):
    """Lost on frame 4, boxed again on frame 6 where it is back: tracked from there."""
    path = [(30, 30) if t < VANISH or t >= 6 else None for t in range(9)]
    frames, truth = clip([path])
    session = tracked(tiny_model, frames, truth)
    session.add_box(6, Box.from_mask(truth[6] == 1), obj_id=1)
    labels = session.propagate("forward", progress=False).array
    assert not labels[VANISH:6].any() and all(labels[t].any() for t in range(6, 9))


def test_track_ends_of_a_label_video():
    """The ends the CLI prints for SAM 2 (its object score empties an absent object's mask)."""
    from medisam.predict.video import track_ends

    labels = np.zeros((6, 4, 4), np.uint8)
    labels[:3, 0, 0], labels[:, 1, 1], labels[2:5, 2, 2] = 1, 2, 3
    assert track_ends(labels, [1, 2, 3]) == ["object 1 not seen after frame 2 (absent on frames 3-5)",
                                             "object 3 not seen after frame 4 (absent on frames 5-5)"]


def test_sam2_absent_object_gives_empty_masks(sam2_tiny, moving_disk, monkeypatch):
    """Where SAM 2's object score says the object is absent, medisam's mask is empty (sam2 sets its
    logits to NO_OBJ_SCORE; the session keeps logits > 0): the score is forced negative after the prompt."""
    frames, masks = moving_disk
    session = VideoSession(sam2_tiny, frames)
    session.add_box(0, Box.from_mask(masks[0]), obj_id=1)
    decoder = sam2_tiny.net.sam_mask_decoder
    forward = decoder.forward

    def absent(*args, **kwargs):
        out = forward(*args, **kwargs)
        return (*out[:3], out[3].clamp(max=-10.0))

    monkeypatch.setattr(decoder, "forward", absent)
    session.propagate("forward", progress=False)
    results = session.results(1)
    assert all(not results[t].mask.any() for t in range(1, len(frames)))
    assert all(results[t].score < 0.5 for t in range(1, len(frames)))


def test_a_colour_only_object_that_vanishes_stops(tiny_model):
    """On colour frames a red disk of the pink background's grey level vanishes on frame 4: it stops there and
    its mask is empty after; the other red disk stays and is tracked to the end, never stopped."""
    frames, truth = colour_clip([[(25 + t, 30) if t < VANISH else None for t in range(8)],
                                 [(70, 35 + t) for t in range(8)]])
    session = tracked(tiny_model, frames, truth)
    labels = session.label_map().array
    assert not (labels[VANISH:] == 1).any()
    assert session.results(1)[VANISH].stop == "lost" and max(session.results(1)) == VANISH
    assert all((labels[t] == 2).sum() > 0.8 * (truth[t] == 2).sum() for t in range(8))
    assert not any(r.stop for r in session.results(2).values())
    # the fault: measured on the grey frame the disk had no contrast, and SAM's answer in its empty box went on
    before = tracked(tiny_model, frames, truth, TrackingConfig(lost_contrast=None)).label_map().array
    assert all((before[t] == 1).any() for t in range(VANISH, 8))


def test_a_colour_object_that_stays_is_not_stopped(tiny_model):
    """A red disk moving across pink of its grey level for 12 frames: tracked on every frame, no stop."""
    frames, truth = colour_clip([[(30 + t, 32) for t in range(12)]])
    session = tracked(tiny_model, frames, truth)
    labels = session.label_map().array
    assert not any(r.stop for r in session.results(1).values())
    assert all((labels[t] == 1).sum() > 0.8 * (truth[t] == 1).sum() for t in range(12))


#: The grey vanish clip's recent looks (area, contrast) of both tracks on some frames (the code before colour
#: looks, rule 6 as in the run-9 default): grey frames keep these numbers.
GREY_LOOKS = {(1, 1): (197.0, 169.79877477640804), (1, 3): (197.0, 170.09294741056323),
              (2, 4): (197.0, 169.85327248761178), (2, 7): (197.0, 170.0632852393416)}


def test_grey_frames_keep_their_looks_and_the_same_frames_in_colour_track_alike(tiny_model):
    """Grey frames give the looks they gave before colour looks (recorded); the same frames as R = G = B colour
    (a grey video in an MP4) give the same label map and stops."""
    frames, truth = clip([[(25 + 2 * t, 30) if t < VANISH else None for t in range(8)],
                          [(70, 35 + t) for t in range(8)]])
    session = tracked(tiny_model, frames, truth)
    for (obj, t), (area, contrast) in GREY_LOOKS.items():
        look = session._looks[(obj, t, 1)]
        assert look.area == area and look.contrast == pytest.approx(contrast, abs=1e-9)
    shown = tracked(tiny_model, np.repeat(frames[..., None], 3, axis=-1), truth)
    assert np.array_equal(shown.label_map().array, session.label_map().array)
    assert [(t, r.stop) for t, r in shown.results(1).items()] == [(t, r.stop) for t, r in session.results(1).items()]
