"""``open_session`` and ``open_predictor``: the one place that picks a session, and a 2D predictor,
implementation for a model."""

from __future__ import annotations

import numpy as np

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.predict.contract import Session, tracks_with_memory


#: what a SAM 2 session takes besides the model and image (``predictor`` and ``tracking`` are dropped)
_SAM2_ARGS = frozenset({"axis", "window", "max_undo"})


def open_session(model: PromptableModel, image: MedicalImage | np.ndarray, **kw) -> Session:
    """A session (:class:`~medisam.predict.contract.Session`) over a volume or a video.

    SAM 2 family models get :class:`~medisam.predict.sam2_session.Sam2Session` (memory
    tracking; ``axis``, ``window``, ``max_undo``; ``axis`` as a VolumeSession's: the frames are
    the volume's slices along it); other models a
    :class:`~medisam.predict.tracking.TrackingSession` for videos (``window``, ``predictor``,
    ``tracking``, ``max_undo``) or a :class:`~medisam.predict.session.VolumeSession` for
    volumes (its arguments: ``axis``, ``window``, ``predictor``, ``config``, ``max_undo``).
    """
    from medisam.predict.sam2_session import Sam2Session
    from medisam.predict.session import VolumeSession
    from medisam.predict.tracking import TrackingSession
    from medisam.predict.video import video_of

    if tracks_with_memory(model):
        kw.pop("predictor", None)  # SAM 2 keeps its own features and tracking rules
        kw.pop("tracking", None)
        other = sorted(set(kw) - _SAM2_ARGS)
        if other:
            raise InputError(f"a {model.name} session takes no {', '.join(other)} "
                             f"(only {', '.join(sorted(_SAM2_ARGS))})")
        return Sam2Session(model, image, **kw)
    if isinstance(image, MedicalImage) and image.is_video:
        tracking = kw.pop("tracking", None)
        session = TrackingSession(model, video_of(image), kw.pop("window", None), kw.pop("predictor", None),
                                  tracking)
        if "max_undo" in kw:
            session.store.max_undo = kw.pop("max_undo")
        if kw:
            raise InputError(f"a video session takes no {', '.join(sorted(kw))}")
        return session
    return VolumeSession(model, image, **kw)


def open_predictor(model: PromptableModel, cache=None, max_pixels: int | None | str = "default"):  # noqa: ANN001, ANN201
    """The 2D predictor of ``model`` for every consumer (``segment``, the server's and web UI's 2D images,
    the benchmark): SAM 2 models get sam2's image predictor (:mod:`medisam.predict.sam2_image`), the
    others a :class:`~medisam.predict.predictor.Predictor` over ``cache`` (an
    :class:`~medisam.predict.cache.EmbeddingCache`; None: the predictor's own). ``max_pixels``: the
    largest image taken (the predictor's default unless given; None: no limit)."""
    from medisam.predict.predictor import Predictor

    kw = {} if max_pixels == "default" else {"max_pixels": max_pixels}
    if tracks_with_memory(model):
        from medisam.predict.sam2_image import Sam2ImagePredictor

        return Sam2ImagePredictor(model, **kw)
    return Predictor(model, cache, **kw)
