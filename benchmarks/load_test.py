"""Load test of ``medisam serve`` on loopback: N concurrent clients, latency percentiles, isolation.

Starts a uvicorn server in this process (background thread, 127.0.0.1, free port, token
auth), then runs ``--clients`` threads; each does ``--rounds`` rounds of: upload its own
distinct image, predict with a box, fetch the label map, close. Every answer is checked
against the mask the library computes for that client's image and box (so a session
that saw another client's data is counted as an isolation failure). Prints per-operation
latency percentiles, throughput and error counts; the whole run is bounded by
``--max-seconds``.

    python benchmarks/load_test.py --clients 8 --rounds 3 --model litemedsam-tiny
    python benchmarks/load_test.py --clients 4 --rounds 2 --model litemedsam

``--soak N`` instead runs N rounds of upload (a CT-like volume), box prompt, propagate,
label map and close with ``--clients`` clients against ``medisam serve`` started as a
separate process on loopback, and prints the server's RSS (baseline after start and after
a warm-up round, peak, after every round once all sessions are closed) and p50/p95
latency per operation (see :mod:`benchmarks.soak`):

    python benchmarks/load_test.py --soak 10 --clients 4 --model litemedsam-tiny
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from medisam.client import Client, ServerError
from medisam.io import MedicalImage
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.predict.segment import segment_image
from medisam.serve import ServerSettings, create_app
from medisam.serve.background import BackgroundServer
from soak import soak, timer

TOKEN = "load-test-token-0123"


def client_case(i: int, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Client ``i``'s distinct image (an ellipse at its own place) and the box around it."""
    rng = np.random.default_rng(i)
    cy, cx = size // 2 + (i % 5 - 2) * size // 12, size // 2 + (i // 5 % 5 - 2) * size // 12
    ry, rx = size // 6 + i % 7, size // 7 + i % 4
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.where(inside, 170, 40) + rng.normal(0, 8, (size, size))
    box = (cx - rx - 4, cy - ry - 4, cx + rx + 5, cy + ry + 5)
    return np.clip(img, 0, 255).astype(np.uint8), box


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--model", default="litemedsam-tiny")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="stop starting new rounds after this")
    ap.add_argument("--slots", default="1,0", help="comma list of ServerSettings.inference_slots to compare "
                    "in this run (0 = one per client, i.e. no queueing)")
    ap.add_argument("--soak", type=int, default=0, metavar="N",
                    help="soak mode: N rounds of upload/prompt/propagate/close against a `medisam serve` process")
    ap.add_argument("--slices", type=int, default=24, help="soak mode: slices of each uploaded volume")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="soak mode: environment of the server process (e.g. MALLOC_ARENA_MAX=2); repeatable")
    args = ap.parse_args()
    if args.soak:
        raise SystemExit(soak(args))
    model = load_model(args.model, device="cpu")
    cases = [client_case(i, args.size) for i in range(args.clients)]
    expected = [segment_image(Predictor(model), MedicalImage.from_array(img), [box]).array > 0 for img, box in cases]
    distinct = len({e.tobytes() for e in expected})
    print(f"model {args.model}, {args.clients} concurrent clients x {args.rounds} rounds, "
          f"{args.size}x{args.size} images, {os.cpu_count()} CPUs; distinct expected masks: {distinct}/{args.clients}")
    failed = False
    for slots in (int(v) for v in args.slots.split(",")):
        failed |= run(args, model, cases, expected, slots or args.clients)
    if failed:
        raise SystemExit(1)


def run(args, model, cases, expected, slots: int) -> bool:  # noqa: ANN001
    """One load run against a fresh server with ``slots`` inference slots; prints its table."""
    settings = ServerSettings(model=args.model, device="cpu", token=TOKEN, max_sessions=max(8, args.clients),
                              inference_slots=slots)
    app = create_app(settings, model=model)

    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    mismatches = 0
    lock = threading.Lock()
    deadline = time.monotonic() + args.max_seconds

    timed = timer(lat, lock)

    def worker(i: int) -> int:
        nonlocal mismatches
        img, box = cases[i]
        done = 0
        with Client(url, token=TOKEN) as c:
            for _ in range(args.rounds):
                if time.monotonic() > deadline:
                    break
                t0 = time.perf_counter()
                try:
                    s = timed("upload", lambda: c.open_session(img))
                    mask = timed("predict", lambda: s.predict(box=box, obj_id=i + 1))
                    labels = timed("labels", lambda: s.labels())
                    timed("close", s.close)
                    ok = np.array_equal(mask, expected[i]) and np.array_equal(labels == i + 1, expected[i]) \
                        and set(np.unique(labels)) <= {0, i + 1}
                    with lock:
                        mismatches += not ok
                        lat["round"].append(time.perf_counter() - t0)
                    done += 1
                except (ServerError, OSError) as exc:
                    with lock:
                        errors[type(exc).__name__ + (f" {exc.status}" if isinstance(exc, ServerError) else "")] += 1
        return done

    with BackgroundServer(app) as url:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            rounds = sum(pool.map(worker, range(args.clients)))
        wall = time.perf_counter() - t0

    print(f"\ninference_slots={slots}")
    print(f"{'operation':<10} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for op in ("upload", "predict", "labels", "close", "round"):
        v = lat[op]
        print(f"{op:<10} {len(v):>5} {pct(v, 50):>9.1f} {pct(v, 95):>9.1f} {pct(v, 99):>9.1f} "
              f"{max(v) * 1000 if v else float('nan'):>9.1f}")
    print(f"completed rounds: {rounds}, wall {wall:.1f} s, throughput {rounds / wall:.2f} rounds/s")
    print(f"errors: {dict(errors) or 0}; isolation failures (wrong mask or foreign label): {mismatches}")
    return bool(mismatches or errors)


if __name__ == "__main__":
    main()
