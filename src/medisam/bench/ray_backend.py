"""Optional Ray backend (``pip install 'medisam[ray]'``): the same evaluator in Ray actors.

Each actor builds one :class:`~medisam.bench.evaluate.CaseEvaluator` (models loaded once)
and cases are spread over the actors with ``ray.util.ActorPool``; results come back as
they finish, as with the local process pool, so the rows are identical. A Ray cluster
already started (``ray start`` / ``RAY_ADDRESS``) is used; otherwise a local one with
``workers`` CPUs is started and shut down afterwards.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

from medisam.bench.datasets import CaseRef
from medisam.bench.evaluate import CaseEvaluator, CaseResult, EvalSettings
from medisam.errors import require

log = logging.getLogger(__name__)


def run_ray(tasks: list[tuple[CaseRef, set]], settings: EvalSettings, workers: int
            ) -> Iterator[tuple[CaseRef, CaseResult]]:
    """Evaluate ``tasks`` on ``workers`` Ray actors; yields ``(ref, result)`` as cases finish."""
    ray = require("ray", "ray")
    from ray.util import ActorPool

    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started = True
    try:
        threads = max(1, (os.cpu_count() or 1) // workers)

        @ray.remote(num_cpus=1)
        class _Actor:
            def __init__(self, settings: EvalSettings, threads: int):
                import torch

                torch.set_num_threads(threads)
                self.evaluator = CaseEvaluator(settings)

            def evaluate(self, ref: CaseRef, skip: set) -> tuple[CaseRef, CaseResult]:
                return ref, self.evaluator.evaluate(ref, skip)

        actors = [_Actor.remote(settings, threads) for _ in range(max(1, min(workers, len(tasks))))]
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, task: actor.evaluate.remote(*task), tasks)
    finally:
        if started:
            ray.shutdown()
