"""Adaptation of SAM-family models: fine-tuning (full, decoder, adapter, LoRA), SAMAug, AutoSAM.

Training reads data through the same path as the benchmark (``medisam.io`` -> dataset
adapters -> targets) and simulates prompts with the shared prompt strategies; the
checkpoints it writes load with ``medisam.load_model(base, checkpoint=...)``.
Heavy imports (MONAI, peft) happen inside the functions that need them.
"""

from medisam.train.config import FinetuneConfig, MODES

__all__ = ["FinetuneConfig", "MODES", "finetune"]


def finetune(config: FinetuneConfig, **kwargs):
    """Train according to ``config`` and write ``config.output``; see :func:`medisam.train.trainer.finetune`
    (keywords ``force``, ``resume``, ``progress``)."""
    from medisam.train.trainer import finetune as _finetune

    return _finetune(config, **kwargs)
