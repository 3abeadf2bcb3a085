"""Prediction: the 2D predictor with its embedding cache (3D/video sessions build on it)."""

from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Prediction, Predictor

__all__ = ["EmbeddingCache", "Prediction", "Predictor"]
