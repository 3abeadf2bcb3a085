"""Prompt simulation shared by the benchmark and fine-tuning.

``sampling``: model-free prompts from a ground-truth mask (boxes, jitter, centre point,
random points, correction clicks). ``strategies``: named strategies (``box``,
``box-jitter10``, ``point``, ``points5``, ``clicks10``, ``everything``, ``box3d`` ...)
that simulate prompts and run them on a Predictor.
"""

from medisam.prompting.sampling import (correction_click, interior_point, jitter_box, negative_region,
                                        random_points, sample_points, tight_box)
from medisam.prompting.strategies import (BoxStrategy, ClicksStrategy, EverythingStrategy, Outcome,
                                          PointsStrategy, PromptSet, Strategy, parse_strategies,
                                          parse_strategy)

__all__ = ["BoxStrategy", "ClicksStrategy", "EverythingStrategy", "Outcome", "PointsStrategy", "PromptSet",
           "Strategy", "correction_click", "interior_point", "jitter_box", "negative_region", "parse_strategies",
           "parse_strategy", "random_points", "sample_points", "tight_box"]
