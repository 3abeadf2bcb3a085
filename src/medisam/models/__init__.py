"""Model registry, builders and the promptable-model adapter."""

from medisam.models.promptable import DecoderOutput, PromptableModel
from medisam.models.registry import MODELS, find_checkpoint, get_spec, load_model, register
from medisam.models.spec import ModelSpec

__all__ = ["MODELS", "DecoderOutput", "ModelSpec", "PromptableModel", "find_checkpoint",
           "get_spec", "load_model", "register"]
