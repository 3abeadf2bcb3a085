"""The model layer says what each model can do: capabilities on the spec, one model type per kind."""

from __future__ import annotations

from dataclasses import replace

import pytest

from medisam.errors import ModelError
from medisam.models import MODELS, PromptableModel, get_spec, load_model
from medisam.models.sam2_model import Sam2Model
from medisam.models.spec import Capabilities


def test_every_registered_model_says_what_it_can_do():
    for spec in MODELS.values():
        caps = spec.capabilities
        assert isinstance(caps, Capabilities)
        assert caps.prompting_2d != caps.memory_propagation, spec.name  # exactly one model type
        assert caps.onnx_export == caps.prompting_2d and caps.slice_propagation == caps.prompting_2d
        assert spec.supports_2d_prompting == caps.prompting_2d
        assert spec.supports_memory_propagation == (spec.family == "sam2")
    assert not replace(get_spec("litemedsam-tiny"), family="unknown").capabilities.prompting_2d


def test_sam2_loads_as_its_own_type_on_every_path(sam2_tiny):
    assert type(sam2_tiny) is Sam2Model and not isinstance(sam2_tiny, PromptableModel)
    assert not hasattr(sam2_tiny, "encode") and not hasattr(sam2_tiny, "decode")
    assert sam2_tiny.image_size == 128 and sam2_tiny.capabilities.memory_propagation
    for backend in ("torch", "auto"):
        assert type(load_model("sam2-tiny", device="cpu", backend=backend, threads=1)) is Sam2Model
    with pytest.raises(ModelError, match="torch, precision fp32"):
        load_model("sam2-tiny", device="cpu", backend="onnx")
    tiny = load_model("litemedsam-tiny", device="cpu", backend="torch")
    assert isinstance(tiny, PromptableModel) and tiny.capabilities.prompting_2d


def test_video_session_dispatches_on_capability(sam2_tiny):
    import numpy as np

    from medisam.predict.sam2_session import Sam2Session
    from medisam.predict.video import VideoSession

    frames = np.zeros((2, 32, 32, 3), np.uint8)
    assert isinstance(VideoSession(sam2_tiny, frames).session, Sam2Session)
