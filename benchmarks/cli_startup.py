"""Start-up time of the ``medisam`` command: process start -> first image encode, and -> a usage error.

Runs the installed entry point (``medisam`` beside this Python) in fresh processes and prints a
table (median of ``--repeat`` runs). "first encode" is the moment ``Predictor.set_image`` is
entered, timed from a tiny wrapper that starts the same ``medisam.cli.main`` in the child
(``time.time()`` in the child minus the parent's clock before ``Popen``). The reference row is
a bare ``python -c pass`` measured in the same run.

    python benchmarks/cli_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "medisam" / "samples" / "ct_spleen_msd_10003_26.jpg"

CHILD_IMPORT_LAST = """
import sys, time
from medisam.cli import main
import medisam.predict.predictor as P
_orig = P.Predictor.set_image
def _timed(self, *a, **k):
    print("FIRST_ENCODE", time.time(), file=sys.stderr, flush=True)
    return _orig(self, *a, **k)
P.Predictor.set_image = _timed
sys.exit(main(sys.argv[1:]))
"""


def first_encode(args: list[str]) -> tuple[float, float]:
    """(seconds to the first set_image, total seconds) of ``medisam ARGS``.

    The patch is applied after ``medisam.cli`` is imported, so lazy imports are timed as
    they happen in a real run.
    """
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD_IMPORT_LAST, *args], capture_output=True, text=True)
    total = time.time() - t0
    for line in proc.stderr.splitlines():
        if line.startswith("FIRST_ENCODE"):
            return float(line.split()[1]) - t0, total
    raise SystemExit(f"no encode in: {' '.join(args)}\n{proc.stderr[-2000:]}")


def wall(cmd: list[str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, capture_output=True, text=True)
    return time.time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="litemedsam-tiny")
    a = parser.parse_args()
    exe = str(Path(sys.executable).parent / "medisam")
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        seg = ["segment", str(SAMPLE), "--box", "100,100,200,200", "-o", f"{tmp}/m.png", "--force",
               "--model", a.model, "--device", "cpu", "--threads", "1"]
        runs = [first_encode(seg) for _ in range(a.repeat)]
        rows.append(("python -c pass (reference)", statistics.median(wall([sys.executable, "-c", "pass"])
                                                                       for _ in range(a.repeat))))
        rows.append(("medisam --help", statistics.median(wall([exe, "--help"]) for _ in range(a.repeat))))
        rows.append(("medisam segment (usage error: no -o)",
                     statistics.median(wall([exe, "segment", str(SAMPLE)]) for _ in range(a.repeat))))
        rows.append(("medisam segment, box outside the image (error)",
                     statistics.median(wall([exe, "segment", str(SAMPLE), "--box", "1,1,900,9", "-o", f"{tmp}/e.png",
                                             "--model", a.model, "--device", "cpu"]) for _ in range(a.repeat))))
        rows.append((f"medisam segment -> first encode ({a.model})", statistics.median(r[0] for r in runs)))
        rows.append((f"medisam segment total ({a.model})", statistics.median(r[1] for r in runs)))
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  seconds (median of {a.repeat})")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:7.2f}")


if __name__ == "__main__":
    main()
