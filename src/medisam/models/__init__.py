"""Model registry, builders and the loaded-model types (what each model can do: ``spec.capabilities``)."""

from medisam.models.embedding_cache import CacheSignature, EmbeddingCache, EmbeddingKey
from medisam.models.loaded import LoadedModel
from medisam.models.promptable import DecoderOutput, PromptableModel
from medisam.models.registry import MODELS, find_checkpoint, get_spec, load_model, register
from medisam.models.sam2_model import Sam2Model
from medisam.models.spec import Capabilities, ModelSpec

__all__ = ["MODELS", "CacheSignature", "Capabilities", "DecoderOutput", "EmbeddingCache", "EmbeddingKey",
           "LoadedModel", "ModelSpec", "PromptableModel", "Sam2Model", "find_checkpoint", "get_spec",
           "load_model", "register"]
