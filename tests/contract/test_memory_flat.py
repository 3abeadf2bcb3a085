"""Memory stays flat over repeated add/propagate/reset cycles on one long-lived session."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
from contract_data import FAST, disk_volume

from medisam.predict import open_session
from medisam.serve import InteractiveSession

CYCLES = 6
#: Cycles that fill the undo history (max_undo=4) before memory is traced: only what is
#: allocated after them and still held can be growth (tracing the warm-up too only slows it).
WARM = 3
BOX = (6, 8, 24, 25)


def _traced_after_each(cycle, n: int = CYCLES, warm: int = WARM) -> list[int]:
    """Bytes tracemalloc sees held (numpy masks/logits, prompt snapshots) after each cycle
    from ``warm`` on, of what was allocated since cycle ``warm`` began."""
    for i in range(warm):
        cycle(i)
    gc.collect()
    tracemalloc.start()
    try:
        held = []
        for i in range(warm, n):
            cycle(i)
            gc.collect()
            held.append(tracemalloc.get_traced_memory()[0])
        return held
    finally:
        tracemalloc.stop()


def test_volume_session_memory_is_flat_over_resets(tiny_model):
    s = open_session(tiny_model, disk_volume()[0], config=FAST, max_undo=4)
    one_cycle, after_reset = [], []

    def cycle(i: int) -> None:
        s.add_box(2, (BOX[0] + i % 3, *BOX[1:]), obj_id=1)
        s.add_points(3, [(15, 16, 1)], obj_id=2)
        s.propagate(progress=False)
        one_cycle.append(s.store.retained_bytes())
        s.reset()
        # a reset keeps what it dropped for its undo, as any edit, until later edits push it out
        assert s.object_ids == [] and not s.label_map().array.any()
        after_reset.append(s.store.retained_bytes())

    held = _traced_after_each(cycle)
    print("held bytes per cycle:", held, "results of one cycle:", one_cycle[-1], "kept after resets:", after_reset)
    assert one_cycle[-1] > 0 and s.max_undo == 4 and s.can_undo == 4  # the history is full, and bounded
    assert 0 < max(after_reset) <= max(one_cycle)  # what one cycle holds, not what every cycle made
    # after the undo history is full, nothing grows: far less than one cycle's results per cycle
    assert max(held) - held[0] < one_cycle[-1] / 10


def test_sam2_session_frees_its_state_on_reset(sam2_tiny):
    s = open_session(sam2_tiny, disk_volume()[0], max_undo=4)
    for i in range(2):
        s.add_box(2, BOX, obj_id=1)
        s.propagate(progress=False)
        assert len(s.results(1)) == 6
        s.reset()
        assert s._results == {} and s._state["output_dict_per_obj"] == {} and s._state["cached_features"] == {}


def test_server_interactive_session_memory_is_flat_over_resets(tiny_model):
    s = InteractiveSession(tiny_model, disk_volume()[0], max_undo=4)
    sizes, after_reset = [], []

    def cycle(i: int) -> None:
        s.segment(2, 1, box=(BOX[0] + i % 3, *BOX[1:]))
        s.add_points(2, 1, points=[(15, 16, 1)])
        s.propagate()
        sizes.append(s.volume.store.retained_bytes())
        s.reset()
        assert not s.labels.any()
        after_reset.append(s.volume.store.retained_bytes())

    held = _traced_after_each(cycle)
    print("held bytes per cycle:", held, "results of one cycle:", sizes[-1], "kept after resets:", after_reset)
    assert sizes[-1] > 0 and s.can_undo <= 4
    assert 0 < max(after_reset) <= max(sizes)  # what one cycle holds, not what every cycle made
    assert max(held) - held[0] < sizes[-1] / 10
    assert np.array_equal(s.labels, np.zeros_like(s.labels))
