"""The benchmark harness: datasets -> cases -> prompt strategies -> metrics -> tables and plots.

``medisam bench`` (see :mod:`medisam.cli.bench_cmd`) drives :func:`run_benchmark`; the
dataset adapters (:func:`iter_cases`, :class:`Case`, :class:`Target`) are also what
fine-tuning reads its training data with.
"""

from medisam.bench.datasets import (Case, CaseRef, DatasetOptions, Target, discover_cases, extract_targets,
                                    iter_cases)

__all__ = ["Case", "CaseRef", "DatasetOptions", "Target", "discover_cases", "extract_targets", "iter_cases"]
