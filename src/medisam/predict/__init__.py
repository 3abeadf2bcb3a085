"""Prediction: the 2D predictor with its embedding cache, and the 3D/video sessions built on it."""

from medisam.predict.cache import EmbeddingCache
from medisam.predict.contract import Session, SliceResult, ViewProgress
from medisam.predict.predictor import Prediction, Predictor
from medisam.predict.propagation import PropagationConfig
from medisam.predict.session import VolumeSession
from medisam.predict.sam2_session import Sam2Session  # noqa: E402 - after session (imports it)
from medisam.predict.video import VideoSession, propagate_video
from medisam.predict.factory import open_session  # noqa: E402 - after the sessions

__all__ = ["EmbeddingCache", "Prediction", "Predictor", "PropagationConfig", "Sam2Session", "Session",
           "SliceResult", "VideoSession", "ViewProgress", "VolumeSession", "open_session", "propagate_video"]
