"""Prediction: the 2D predictor with its embedding cache (3D/video sessions build on it)."""

from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Prediction, Predictor
from medisam.predict.propagation import PropagationConfig
from medisam.predict.session import SliceResult, VolumeSession
from medisam.predict.sam2_session import Sam2Session  # noqa: E402 - after session (imports it)
from medisam.predict.video import VideoSession, propagate_video

__all__ = ["EmbeddingCache", "Prediction", "Predictor", "PropagationConfig", "Sam2Session", "SliceResult",
           "VideoSession", "VolumeSession", "propagate_video"]
