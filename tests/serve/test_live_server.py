"""A real uvicorn server on loopback: concurrent sessions stay isolated; client == CLI on real weights."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_data import TOKEN, disk

from medisam.client import Client


@pytest.fixture(scope="module")
def live_url(tiny_model):
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.background import BackgroundServer

    app = create_app(ServerSettings(model="litemedsam-tiny", token=TOKEN, max_sessions=16), model=tiny_model)
    with BackgroundServer(app) as url:
        yield url


def test_concurrent_sessions_are_isolated(live_url, tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import Predictor
    from medisam.predict.segment import segment_image

    cases = [(disk(center=(30 + 9 * i, 40 + 4 * i), radius=12 + i), (10 + 5 * i, 15, 70 + 2 * i, 80)) for i in range(4)]
    expected = [segment_image(Predictor(tiny_model), MedicalImage.from_array(img), [box]).array > 0
                for img, box in cases]
    assert len({e.tobytes() for e in expected}) == len(cases)  # distinct answers, so a mix-up would show

    def run(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img, box = cases[i]
        with Client(live_url, token=TOKEN) as c, c.open_session(img) as s:
            mask = s.predict(box=box, obj_id=i + 1)
            again = s.labels()
            return mask, again, s.info["shape"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(len(cases))))
    for i, (mask, labels, shape) in enumerate(results):
        assert np.array_equal(mask, expected[i]), i
        assert set(np.unique(labels)) <= {0, i + 1}  # no other client's object id
        assert np.array_equal(labels == i + 1, expected[i])
    with Client(live_url, token=TOKEN) as c:
        assert c.request("GET", "/sessions").json()["open"] == 0


def test_wrong_token_over_the_network(live_url):
    from medisam.client import ServerError

    with Client(live_url, token="not-the-token") as c:
        assert c.healthz() == {"status": "ok"}
        with pytest.raises(ServerError) as err:
            c.capabilities()
        assert err.value.status == 401


@pytest.mark.real_weights
def test_client_segment_equals_cli_segment(real_model, tmp_path):
    """The same image and box through HTTP and through `medisam segment` give the same mask."""
    from fastapi.testclient import TestClient

    from medisam.cli import main
    from medisam.io import read_image
    from medisam.samples import __file__ as samples_init
    from medisam.serve import ServerSettings, create_app

    sample = Path(samples_init).parent / "ct_liver_chaos_101_1045.jpg"
    box = (55, 60, 322, 347)
    out = tmp_path / "cli.png"
    backend = ["--backend", getattr(real_model, "backend", "torch"),
               "--precision", getattr(real_model, "precision", None) or "fp32"]
    assert main(["segment", str(sample), "--box", ",".join(map(str, box)), "-o", str(out), "--device", "cpu",
                 *backend]) == 0
    cli_mask = read_image(out).array > 0
    with TestClient(create_app(ServerSettings(allowed_hosts=("testserver",)), model=real_model)) as tc:
        client_mask = Client(http=tc).segment(sample, box=box)
    assert cli_mask.sum() > 1000
    assert np.array_equal(client_mask, cli_mask)


@pytest.mark.real_weights
def test_a_click_alone_through_http_and_the_cli_finds_the_object(real_model, tmp_path):
    """A click with no box: the server and `medisam segment --point` answer it with the same box search,
    and the mask is the object's (the box's mask), not LiteMedSAM's near-empty point prompt."""
    from fastapi.testclient import TestClient

    from medisam.cli import main
    from medisam.io import read_image
    from medisam.metrics_basic import dice
    from medisam.samples import __file__ as samples_init
    from medisam.serve import ServerSettings, create_app

    sample = Path(samples_init).parent / "ct_liver_chaos_101_1045.jpg"
    out = tmp_path / "click.png"
    backend = ["--backend", getattr(real_model, "backend", "torch"),
               "--precision", getattr(real_model, "precision", None) or "fp32"]
    assert main(["segment", str(sample), "--point", "150,200", "-o", str(out), "--device", "cpu", *backend]) == 0
    cli_mask = read_image(out).array > 0
    with TestClient(create_app(ServerSettings(allowed_hosts=("testserver",)), model=real_model)) as tc:
        with Client(http=tc).open_session(sample) as s:
            client_mask = s.predict(points=[(150, 200, 1)])
            found = s.last_found_box
            again = s.predict(box=found, obj_id=3)  # the box found, given back as a box prompt
            assert s.last_found_box is None  # a drawn box is not a found one
            box_mask = s.predict(box=(55, 60, 322, 347), obj_id=2)
    assert np.array_equal(client_mask, cli_mask)
    assert dice(client_mask, box_mask) > 0.8
    assert found is not None and found[0] <= 150 <= found[2] and found[1] <= 200 <= found[3]
    ys, xs = np.nonzero(client_mask)
    assert found[0] <= xs.min() and xs.max() < found[2] and found[1] <= ys.min() and ys.max() < found[3]
    assert dice(again, client_mask) > 0.98
