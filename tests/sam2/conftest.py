"""SAM 2 tests need the sam2 package; their fixtures (``sam2_tiny``, ``moving_disk``) are in tests/conftest.py,
which the benchmark's SAM 2 tests share."""

from __future__ import annotations

import pytest

pytest.importorskip("sam2")
