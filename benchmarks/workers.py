"""What each worker process of a benchmark's pool does first: load the default model on a number of
threads (``Pool(initializer=init_worker, initargs=(threads,))``); the worker's jobs read ``WORKER``."""

from __future__ import annotations

import os

#: the worker's state: ``"model"`` once :func:`init_worker` ran; scripts keep their own settings here too
WORKER: dict = {}


def init_worker(threads: int) -> None:
    """Per worker: the default model (``load_model("litemedsam")``, the default backend) on ``threads`` threads."""
    os.environ["MEDISAM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from medisam.models import load_model

    WORKER["model"] = load_model("litemedsam")
