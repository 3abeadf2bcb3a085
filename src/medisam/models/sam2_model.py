"""The loaded SAM 2 / MedSAM2 model: sam2's video predictor, driven by memory propagation.

SAM 2 has no 2D ``encode``/``decode`` pair that fits :class:`PromptableModel` (its decoder
takes multi-scale features and a memory-conditioned embedding), so it is its own type:
:class:`~medisam.predict.sam2_session.Sam2Session` drives ``net`` (a
``sam2.sam2_video_predictor.SAM2VideoPredictor``) directly for volumes and videos; 2D images go
through sam2's own image predictor on the same network (:mod:`medisam.predict.sam2_image`).
"""

from __future__ import annotations

from medisam.models.loaded import LoadedModel


class Sam2Model(LoadedModel):
    """A SAM 2 family network (``spec.capabilities.memory_propagation``); torch fp32 only."""

    @property
    def image_size(self) -> int:
        """Side of the square network input (1024 for SAM 2.1, 512 for MedSAM2)."""
        return int(self.net.image_size)
