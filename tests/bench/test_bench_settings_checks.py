"""The benchmark's settings check themselves (they were checked by ``medisam bench`` only): an API run with a
NaN tolerance, a negative seed or 0 workers is a one-line InputError when the settings are made, not an error
row per case, numpy's traceback or a failing process pool."""

from __future__ import annotations

import re

import pytest

from medisam.bench.evaluate import EvalSettings
from medisam.bench.runner import BenchConfig, DatasetSpec
from medisam.errors import InputError

MODELS = {"models": ("litemedsam-tiny",), "strategies": ("box",)}


@pytest.mark.parametrize("kw,expected", [
    ({"tolerance_mm": float("nan")}, "tolerance_mm must be a finite number of mm > 0, got nan"),
    ({"tolerance_mm": float("inf")}, "tolerance_mm must be a finite number of mm > 0, got inf"),
    ({"tolerance_mm": -1.0}, "tolerance_mm must be a finite number of mm > 0, got -1.0"),
    ({"tolerance_mm": "abc"}, "tolerance_mm must be a number of mm > 0, got 'abc'"),
    ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
    ({"seed": 1.5}, "seed must be a whole number >= 0, got 1.5"),
    ({"seed": True}, "seed must be a whole number >= 0, got True"),
], ids=["tolerance nan", "tolerance inf", "tolerance negative", "tolerance text", "seed negative", "seed float",
        "seed bool"])
def test_eval_settings_refuse_bad_values(kw, expected):
    with pytest.raises(InputError) as info:
        EvalSettings(**MODELS, **kw)
    assert str(info.value) == expected and "\n" not in str(info.value)


def test_eval_settings_keep_good_values_with_the_tolerance_a_float():
    settings = EvalSettings(**MODELS, seed=0, tolerance_mm=1)
    assert settings.seed == 0 and settings.tolerance_mm == 1.0 and isinstance(settings.tolerance_mm, float)


@pytest.mark.parametrize("workers", [0, -2, 1.5, True, "2"])
def test_bench_config_refuses_workers_below_one_or_not_whole(tmp_path, workers):
    with pytest.raises(InputError, match=f"^{re.escape(f'workers must be a whole number >= 1, got {workers!r}')}$"):
        BenchConfig(datasets=(DatasetSpec(str(tmp_path)),), settings=EvalSettings(**MODELS), outdir=str(tmp_path),
                    workers=workers)
