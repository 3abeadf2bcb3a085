"""Segmentation loss: MONAI Dice + BCE-with-logits on the original pixel grid, plus IoU-head MSE.

Dice + BCE is MedSAM's loss; the MSE between the predicted and the achieved IoU keeps the
decoder's quality scores meaningful (as in LiteMedSAM training), which everything-mode
filtering relies on.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medisam.errors import require


class SegLoss(nn.Module):
    """``dice_weight * Dice + bce_weight * BCE + iou_weight * MSE(iou_pred, IoU)``."""

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, iou_weight: float = 1.0):
        super().__init__()
        losses = require("monai.losses", "train")
        # squared_pred as in MedSAM; batch=False: every target counts equally
        self.dice = losses.DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")
        self.bce = nn.BCEWithLogitsLoss()
        self.weights = (dice_weight, bce_weight, iou_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor | None = None,
                ) -> torch.Tensor:
        """``logits``/``target``: ``(K, 1, H, W)``; ``iou_pred``: ``(K, 1)``."""
        target = target.float()
        logits = logits.float()
        loss = self.weights[0] * self.dice(logits, target) + self.weights[1] * self.bce(logits, target)
        if iou_pred is not None and self.weights[2]:
            with torch.no_grad():
                pred = logits > 0
                inter = (pred & (target > 0.5)).flatten(1).sum(1).float()
                union = (pred | (target > 0.5)).flatten(1).sum(1).float()
                iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
            loss = loss + self.weights[2] * F.mse_loss(iou_pred.float().flatten(), iou)
        return loss


def dice_per_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of ``logits > 0`` against binary ``target`` per target ``(K,)``; 1 when both empty."""
    pred = (logits > 0).flatten(1)
    truth = (target > 0.5).flatten(1)
    inter = (pred & truth).sum(1).float()
    total = pred.sum(1).float() + truth.sum(1).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def dice_of_present(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """Sum of :func:`dice_per_target` over the targets present in the truth or the prediction, and their count.

    A target empty in both (a class absent from an image, and not predicted) says nothing of
    the model: scored 1, such targets would let an almost empty multi-class prediction score well.
    """
    present = ((logits > 0) | (target > 0.5)).flatten(1).any(1)
    dice = dice_per_target(logits, target)[present]
    return float(dice.sum()), int(present.sum())
