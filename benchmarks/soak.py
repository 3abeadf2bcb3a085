"""Soak test of ``medisam serve`` (run through ``benchmarks/load_test.py --soak N``).

The server runs as its own process (``medisam serve`` on a free loopback port, token auth),
so its resident memory is measured alone (psutil, sampled every 20 ms for the peak). Each of
``--clients`` threads does, per round: upload its own CT-like volume (NRRD), a box prompt on
the middle slice, propagate through the volume, fetch the label map, close. After every
round (all sessions closed) the server's RSS is read; the table shows whether it returns to
its warm baseline. Every client checks its own label map (one label, non-empty).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil

from medisam.client import Client, ServerError

TOKEN = "soak-test-token-0123"
OPS = ("upload", "predict", "propagate", "labels", "close", "round")


def volume_case(i: int, size: int, slices: int) -> tuple[np.ndarray, tuple[float, float, float, float], int]:
    """Client ``i``'s CT-like volume (HU): an ellipsoid 'organ' in soft tissue, its box on the middle slice."""
    rng = np.random.default_rng(i)
    zz, yy, xx = np.mgrid[:slices, :size, :size]
    cz, cy, cx = slices / 2, size / 2 + (i % 3 - 1) * size / 10, size / 2 + (i % 2) * size / 10
    rz, ry, rx = slices / 3, size / 5, size / 6
    inside = ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    vol = np.where(inside, 60.0, -20.0) + rng.normal(0, 10, inside.shape)
    box = (cx - rx - 3, cy - ry - 3, cx + rx + 3, cy + ry + 3)
    return vol.astype(np.int16), box, slices // 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, clients: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``medisam serve`` in a child process (extra ``env``); returns it and its URL once /healthz answers."""
    port = _free_port()
    cmd = [sys.executable, "-c", "from medisam.cli import run; run()", "serve", "--port", str(port),
           "--model", model, "--device", "cpu", "--max-sessions", str(max(8, clients))]
    proc = subprocess.Popen(cmd, env={**os.environ, **env, "MEDISAM_TOKEN": TOKEN}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    with Client(url, token=TOKEN) as c:
        while True:
            try:
                c.healthz()
                return proc, url
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise SystemExit(f"medisam serve did not start (exit {proc.poll()})")
                time.sleep(0.2)


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``period`` s and keeps the peak."""

    def __init__(self, pid: int, period: float = 0.02):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.period = period
        self.peak = 0
        self._stop = threading.Event()

    def now(self) -> int:
        rss = self.proc.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.now()
            except psutil.Error:
                return
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop.set()


def timer(lat: dict[str, list[float]], lock: threading.Lock):  # noqa: ANN201
    """``timed(op, fn)``: call ``fn`` and append its duration to ``lat[op]`` (thread-safe)."""
    def timed(op: str, fn):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            with lock:
                lat[op].append(time.perf_counter() - t0)
    return timed


def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f}"


def soak(args) -> int:  # noqa: ANN001 - argparse namespace from load_test.py
    """Run the soak; print the memory and latency tables; return 1 on errors or wrong masks."""
    cases = [volume_case(i, args.size, args.slices) for i in range(args.clients)]
    env = dict(item.split("=", 1) for item in args.server_env)
    proc, url = start_server(args.model, args.clients, env)
    sampler = RssSampler(proc.pid)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    bad = 0
    lock = threading.Lock()

    timed = timer(lat, lock)

    def one_round(i: int, record: bool) -> None:
        nonlocal bad
        vol, box, k = cases[i]
        step = timed if record else (lambda op, fn: fn())
        t0 = time.perf_counter()
        try:
            with Client(url, token=TOKEN, timeout=600) as c:
                s = step("upload", lambda: c.open_session(vol, spacing=(0.8, 0.8, 2.5), modality="CT"))
                try:
                    step("predict", lambda: s.predict(k, box=box, obj_id=1))
                    step("propagate", lambda: s.propagate("both"))
                    labels = step("labels", s.labels)
                finally:
                    step("close", s.close)
            ok = labels.shape == vol.shape and set(np.unique(labels)) == {0, 1} and (labels > 0).any(axis=(1, 2)).sum() > 1
            with lock:
                bad += not ok
                if record:
                    lat["round"].append(time.perf_counter() - t0)
        except (ServerError, OSError) as exc:
            with lock:
                errors[f"{type(exc).__name__} {exc}"[:120]] += 1

    try:
        start_rss = sampler.now()
        sampler.start()
        with ThreadPoolExecutor(args.clients) as pool:  # warm-up round: lazy imports, allocator pools
            list(pool.map(lambda i: one_round(i, False), range(args.clients)))
        time.sleep(0.5)
        base = sampler.now()
        after: list[int] = []
        t_start = time.perf_counter()
        for _ in range(args.soak):
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i: one_round(i, True), range(args.clients)))
            time.sleep(0.5)
            after.append(sampler.now())
            with Client(url, token=TOKEN) as c:
                if c.open_sessions():
                    errors["sessions left open"] += 1
        wall = time.perf_counter() - t_start
    finally:
        sampler.stop()
        proc.terminate()
        proc.wait(30)
    print(f"soak: model {args.model}, {args.clients} clients x {args.soak} rounds (+1 warm-up), "
          f"volumes {args.slices}x{args.size}x{args.size} int16, server `medisam serve` pid {proc.pid}, "
          f"{os.cpu_count()} CPUs, wall {wall:.0f} s, server env {env or 'default'}")
    print(f"\n{'server RSS (MiB)':<34} {'value':>8}")
    rows = [("after start", start_rss), ("baseline (after warm-up round)", base), ("peak", sampler.peak)]
    rows += [(f"after round {r + 1} (sessions closed)", v) for r, v in enumerate(after)
             if len(after) <= 12 or r < 3 or r >= len(after) - 3]
    for name, v in rows:
        print(f"{name:<34} {mib(v):>8}")
    growth = after[-1] - base if after else 0
    print(f"{'after last round - baseline':<34} {growth / (1 << 20):>+8.0f}")
    print(f"\n{'operation':<10} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    for op in OPS:
        v = lat[op]
        q = np.percentile(v, [50, 95]) * 1000 if v else (float("nan"),) * 2
        print(f"{op:<10} {len(v):>5} {q[0]:>9.1f} {q[1]:>9.1f} {max(v) * 1000 if v else float('nan'):>9.1f}")
    print(f"errors: {dict(errors) or 0}; wrong label maps: {bad}")
    return int(bool(errors or bad))
