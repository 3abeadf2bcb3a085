"""``medisam serve`` with a SAM 2 model (the tiny random-weight sam2-tiny): volumes are served by
Sam2Session, 2D images by sam2's image predictor, as ``medisam segment``."""

from __future__ import annotations

import numpy as np
import pytest
from serve_data import ct_volume

from medisam.client import Client, ServerError

pytest.importorskip("sam2")


@pytest.fixture(scope="module")
def sam2_tiny():
    from medisam.models import load_model

    return load_model("sam2-tiny", device="cpu")


@pytest.fixture()
def sam2_client(sam2_tiny):
    from fastapi.testclient import TestClient

    from medisam.serve import ServerSettings, create_app

    settings = ServerSettings(model="sam2-tiny", device="cpu", allowed_hosts=("testserver",))
    with TestClient(create_app(settings, model=sam2_tiny)) as tc:
        yield Client(http=tc)


def test_a_volume_is_prompted_propagated_and_undone_with_sam2(sam2_client):
    assert sam2_client.capabilities()["propagation"] is True
    with sam2_client.open_session(ct_volume((6, 48, 48)), spacing=(1.0, 1.0, 2.0)) as s:
        seed = s.predict(2, box=(12, 12, 36, 36))
        assert seed.shape == (48, 48)
        s.add_lasso(4, [(10, 10), (30, 10), (30, 30)], obj_id=2)
        result = s.propagate()
        assert result
        labels = s.labels()
        assert labels.shape == (6, 48, 48) and set(np.unique(labels)) <= {0, 1, 2}
        s.add_box3d((12, 12, 1, 36, 36, 3), obj_id=3)
        answer = s.client.request("POST", s._url("/undo")).json()  # the propagated slices are given back
        assert answer["undone"] and answer["notices"] == []
        np.testing.assert_array_equal(s.labels(), labels)
        assert s.undo() and s.client.request("POST", s._url("/undo")).json()["notices"] == []
        with pytest.raises(ServerError, match="3D clicks are not available"):
            s.add_click((2, 20, 20))


def test_a_2d_image_is_segmented_with_sams_image_predictor_as_the_cli_does(sam2_client, sam2_tiny):
    """A 2D upload was a 400 ("upload a volume"); it is served by sam2's image predictor, the masks
    ``medisam segment`` gives (``open_predictor`` + ``segment_image``), with clicks and undo."""
    from medisam.io.medical_image import MedicalImage
    from medisam.predict.factory import open_predictor
    from medisam.predict.segment import segment_image

    picture = np.zeros((32, 40), np.uint8)
    picture[8:24, 10:30] = 200
    with sam2_client.open_session(picture) as s:
        mask = s.predict(box=(8, 6, 32, 26))
        want = segment_image(open_predictor(sam2_tiny), MedicalImage.from_array(picture), [(8, 6, 32, 26)])
        assert np.array_equal(mask, want.array == 1)
        s.add_points(points=[(20, 16, 1), (2, 2, 0)])
        assert s.labels().shape == (32, 40) and s.undo()


def test_a_sam2_sessions_frames_count_against_the_limits_and_are_freed_at_close(sam2_tiny):
    """A SAM 2 session keeps every slice resized to the model's square input: a 6000 x 4 x 4 upload
    held 1.5 GiB and was counted as 0.4 MB, and a closed session stayed in memory until some later
    garbage collection (its undo store refers back to it)."""
    import gc

    from fastapi.testclient import TestClient

    from medisam.predict.sam2_frames import NormalisedFrames
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.uploads import model_frame_bytes

    per_frame = model_frame_bytes(sam2_tiny)
    assert per_frame == int(sam2_tiny.net.image_size) ** 2
    thin = np.random.default_rng(0).integers(0, 255, (200, 4, 4)).astype(np.uint8)
    limit = 100 * per_frame  # room for 100 resized slices, far more than the pixels themselves
    settings = ServerSettings(model="sam2-tiny", device="cpu", allowed_hosts=("testserver",),
                              max_session_bytes=limit)
    with TestClient(create_app(settings, model=sam2_tiny)) as tc:
        client = Client(http=tc)
        with pytest.raises(ServerError) as err:
            client.open_session(thin)
        assert err.value.status == 413 and "more than the limit" in str(err.value)
        gc.collect()
        before = sum(isinstance(o, NormalisedFrames) for o in gc.get_objects())
        with client.open_session(thin[:50]) as s:  # within the limit
            s.predict(2, box=(0, 0, 4, 4))
        assert sum(isinstance(o, NormalisedFrames) for o in gc.get_objects()) == before  # freed at close


def test_undoing_a_removal_or_a_reset_gives_the_propagated_slices_back(sam2_client):
    """DELETE /objects/1 then /undo brought object 1 back on its seed slice alone (then a notice said:
    propagate again); the undo now gives back the labels as they were, and says nothing."""
    with sam2_client.open_session(ct_volume((6, 48, 48)), spacing=(1.0, 1.0, 2.0)) as s:
        s.add_box3d((12, 12, 1, 36, 36, 4), obj_id=1)
        s.propagate()
        shown = s.labels()
        for edit in ("DELETE /objects/1", "POST /reset"):
            method, path = edit.split()
            s.client.request(method, s._url(path))
            answer = s.client.request("POST", s._url("/undo")).json()
            assert answer["undone"] and answer["notices"] == [], edit
            np.testing.assert_array_equal(s.labels(), shown)
