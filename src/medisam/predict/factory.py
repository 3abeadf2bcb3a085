"""``open_session``: the one place that picks a session implementation for a model and image."""

from __future__ import annotations

import numpy as np

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.predict.contract import Session, tracks_with_memory


def open_session(model: PromptableModel, image: MedicalImage | np.ndarray, **kw) -> Session:
    """A session (:class:`~medisam.predict.contract.Session`) over a volume or a video.

    SAM 2 family models get :class:`~medisam.predict.sam2_session.Sam2Session` (memory
    tracking; ``window``, ``max_undo``); other models a
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
