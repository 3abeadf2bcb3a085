"""sam2 module subclasses that medisam's SAM 2 configs instantiate (imports ``sam2``: optional extra).

sam2's video predictor always stores mask memories as bfloat16 (it assumes CUDA autocast);
without autocast (CPU) the memory attention then multiplies bfloat16 memories with float32
weights and fails ("mat1 and mat2 must have the same dtype", facebookresearch/sam2 issues
#308 and #577). :class:`DtypeSafeMemoryAttention` casts the memories to the dtype of the
current frame's features first; its parameters and state-dict keys are sam2's.
"""

from __future__ import annotations

import torch
from sam2.modeling.memory_attention import MemoryAttention


class DtypeSafeMemoryAttention(MemoryAttention):
    """sam2 ``MemoryAttention`` that accepts memories stored in another floating dtype."""

    def forward(self, curr: torch.Tensor, memory: torch.Tensor, curr_pos: torch.Tensor | None = None,
                memory_pos: torch.Tensor | None = None, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        ref = curr[0] if isinstance(curr, list) else curr
        memory = memory.to(ref.dtype)
        if memory_pos is not None:
            memory_pos = memory_pos.to(ref.dtype)
        return super().forward(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)
