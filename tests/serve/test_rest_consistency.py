"""REST answers that agree with each other and with the CLI: a CT window on an image not in HU is
warned of, a window change after prompting is refused on 2D as on a volume, a slice of a 2D image
is a 400 on every route, error messages show plain numbers, and a huge box logs no overflow."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from serve_data import ct_volume, disk, png_bytes

from medisam.errors import PromptError
from medisam.prompts import Box


def _upload(tc, name: str, data: bytes, **form):
    return tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)


def _nrrd(volume: np.ndarray) -> bytes:
    from medisam.client import nrrd_bytes

    return nrrd_bytes(volume, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


def test_a_ct_window_on_an_image_not_in_hu_is_warned_of_at_upload_and_window_change(make_client):
    """The CLI warned (``--window lung ... is not in HU``); the server applied the window silently."""
    tc = make_client()
    png = png_bytes(disk())  # 8-bit values 30 .. 200, no modality: not in HU
    info = _upload(tc, "scan.png", png, window="lung").json()
    assert info["warnings"] == ["window lung is a CT window in Hounsfield units (-1350 .. 150), but the image "
                                "(values 30 .. 200) is not in HU: it is clipped there as asked; give WIDTH,LEVEL in "
                                "the image's own units, or use the modality's default window (then: none: 8-bit "
                                "values as stored)"]
    sid = info["session_id"]
    assert tc.get(f"/sessions/{sid}").json()["warnings"] == info["warnings"]  # while that window is in use
    assert tc.post(f"/sessions/{sid}/window", json={"window": "400,40"}).json()["warnings"] == []  # numbers: asked
    assert "is a CT window" in tc.post(f"/sessions/{sid}/window", json={"window": "bone"}).json()["warnings"][0]
    assert tc.post(f"/sessions/{sid}/window", json={"window": None}).json()["warnings"] == []
    mr = _upload(tc, "mr.nrrd", _nrrd(ct_volume() + 1000.0), modality="MR").json()["session_id"]
    said = tc.post(f"/sessions/{mr}/window", json={"window": "soft-tissue"}).json()["warnings"]
    assert len(said) == 1 and "but the image (MR, values 100 .. 1060) is not in HU" in said[0]
    ct = _upload(tc, "ct.nrrd", _nrrd(ct_volume()), modality="CT", window="lung").json()
    assert ct["warnings"] == []  # a CT is in HU


def test_a_window_change_after_prompting_a_2d_image_is_refused_as_on_a_volume(make_client):
    """On 2D it was accepted: the masks kept the old window while the picture showed the new one."""
    tc = make_client()
    sid = _upload(tc, "scan.png", png_bytes(disk())).json()["session_id"]
    assert tc.post(f"/sessions/{sid}/predict", json={"box": [20, 20, 76, 76]}).status_code == 200
    r = tc.post(f"/sessions/{sid}/window", json={"window": "lung"})
    assert r.status_code == 400 and r.json()["detail"] == ("change the window before prompting an image "
                                                           "(or undo/reset first)")
    assert tc.get(f"/sessions/{sid}").json()["window"] is None
    assert tc.post(f"/sessions/{sid}/undo").json()["undone"]
    assert tc.post(f"/sessions/{sid}/window", json={"window": "lung"}).json()["window"] == "lung"


def test_a_slice_of_a_2d_image_is_a_400_for_the_mask_as_for_the_labels(make_client):
    tc = make_client()
    sid = _upload(tc, "scan.png", png_bytes(disk())).json()["session_id"]
    tc.post(f"/sessions/{sid}/predict", json={"box": [20, 20, 76, 76]})
    for url in (f"/sessions/{sid}/labels?slice=2", f"/sessions/{sid}/mask?format=png&slice=3"):
        r = tc.get(url)
        assert r.status_code == 400 and "requested from a 2D image" in r.json()["detail"], url
    assert tc.get(f"/sessions/{sid}/mask?format=png&slice=0").status_code == 200


def test_a_fractional_3d_box_names_plain_numbers(make_client):
    tc = make_client()
    sid = _upload(tc, "ct.nrrd", _nrrd(ct_volume((12, 48, 48))), modality="CT").json()["session_id"]
    r = tc.post(f"/sessions/{sid}/box3d", json={"box3d": [5.5, 5, 10, 24, 31, 32.7]})
    assert r.status_code == 400
    assert r.json()["detail"] == ("3D box values are voxel indices and must be integers, got "
                                  "5.5, 5, 10, 24, 31, 32.7")


def test_a_huge_box_is_a_400_without_an_overflow_warning(make_client):
    tc = make_client()
    sid = _upload(tc, "scan.png", png_bytes(disk())).json()["session_id"]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        r = tc.post(f"/sessions/{sid}/predict", json={"box": [0, 0, 1e300, 1e300]})
    assert r.status_code == 400 and "reaches outside the 96x96" in r.json()["detail"]
    assert not [w for w in said if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in said]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PromptError, match="far outside any image"):  # no silent inf from the float32 cast
            Box(0, 0, 1e300, 1e300).as_array()


def test_a_larger_object_prompted_later_does_not_cover_a_smaller_one_on_a_2d_image(tiny_model, monkeypatch):
    """2D label maps paint as volumes do (the smaller object on top, ``paint_order``): a click answered with
    the whole thorax took the pixels of the lung boxed before it. The larger object keeps the rest."""
    from medisam.io.medical_image import MedicalImage
    from medisam.predict.predictor import Prediction
    from medisam.serve.interactive import InteractiveSession

    session = InteractiveSession(tiny_model, MedicalImage.from_array(np.zeros((40, 50), np.float32)))
    small, large = np.zeros((40, 50), bool), np.zeros((40, 50), bool)
    small[10:20, 10:20] = True
    large[5:35, 5:45] = True
    answers = iter([small, large, small])

    def predict_batch(boxes):
        mask = next(answers)
        return Prediction(mask[None], np.array([0.9], np.float32), np.zeros((1, 64, 64), np.float32))

    monkeypatch.setattr(session.predictor, "predict_batch", predict_batch)
    session.segment(None, 1, box=(10, 10, 20, 20))
    session.segment(None, 2, box=(5, 5, 45, 35))
    labels = session.labels
    assert (labels[small] == 1).all()  # the lung stays on top (it was all object 2)
    assert (labels[large & ~small] == 2).all()
    session.segment(None, 1, box=(10, 10, 20, 20))  # prompted again, the smaller one takes its pixels back
    assert (session.labels[small] == 1).all() and (session.labels[large & ~small] == 2).all()
