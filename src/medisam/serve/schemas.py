"""Request and response bodies of the REST API (pydantic; they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, Field


def _not_bool(value: object) -> object:
    """Refuse ``true``/``false`` where an index is expected (pydantic's lax mode read ``true`` as slice 1)."""
    if isinstance(value, bool):
        raise ValueError("Input should be an integer index, not a boolean")
    return value


#: A slice or voxel index: an integer (``3``, ``3.0``, ``"3"``), never a boolean.
Index = Annotated[int, BeforeValidator(_not_bool)]

#: What a request's ``slice`` is
SLICE_DOC = "index along the session's axis (SessionInfo.axis; volumes, videos' frames); omit for 2D"


class EncodedArray(BaseModel):
    """A numpy array on the wire: zlib-compressed C-order bytes, base64 (see medisam.client)."""

    shape: list[int]
    dtype: str
    data: str


#: Largest side of a mask prompt (pixels); a larger claimed shape is refused before decoding.
MAX_MASK_SIDE = 1 << 16


class MaskPrompt(EncodedArray):
    """An ``(H, W)`` mask prompt: exactly two dimensions, each 1..65536."""

    shape: list[Annotated[int, Field(ge=1, le=MAX_MASK_SIDE)]] = Field(min_length=2, max_length=2)


class SessionInfo(BaseModel):
    session_id: str
    filename: str
    format: Optional[str] = None
    shape: list[int] = Field(description="array shape: (Y, X[, C]) for 2D, (Z, Y, X) volumes, (T, Y, X[, C]) videos")
    is_volume: bool
    is_video: bool
    is_rgb: bool
    axis: int = Field(0, description="the array axis every request's and answer's \"slice\" indexes: a volume's "
                      "acquisition axis (its thick one: 2 for a sagittal scan stored with its slices last) unless "
                      "the upload named another; 0 for 2D images and videos (frames)")
    num_slices: int = Field(description="slices along axis (frames of a video, 1 for a 2D image)")
    slice_shape: list[int] = Field(default_factory=list, description="(H, W) of a slice along axis: its rows and "
                                   "columns are the other two array axes in order")
    pixel_mm: list[float] = Field(default_factory=list, description="a slice's pixel size (x = column, y = row), "
                                  "mm: draw it in this aspect (1, 1 for 2D images and videos)")
    modality: str
    spacing: list[float] = Field(description="mm, ITK order (x, y[, z])")
    origin: list[float] = Field(description="mm, LPS, ITK order")
    direction: list[float]
    window: Optional[str] = None
    object_ids: list[int] = []
    undo_steps: int = 0
    dicom: bool = Field(False, description="True when DICOM-SEG download is possible")
    guides: int = Field(0, description="other channels the 3D clicks see (POST /sessions/{id}/guides)")
    warnings: list[str] = Field(default_factory=list, description="what the window in use warns of, e.g. a CT "
                                "(HU) window on an image not in HU; empty: nothing")


class PromptRequest(BaseModel):
    """Prompts on one slice, in pixels of that slice (x = column, y = row)."""

    slice: Optional[Index] = Field(None, description=SLICE_DOC)
    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")
    box: Optional[list[float]] = Field(None, min_length=4, max_length=4, description="x0, y0, x1, y1")
    points: Optional[list[list[float]]] = Field(None, description="[[x, y, label], ...]; label 1 positive, 0 negative")
    mask: Optional[MaskPrompt] = Field(None, description="(H, W) binary mask prompt on the slice grid")


class Box3DRequest(BaseModel):
    """A 3D box prompt: ``box3d``, or a 2D ``box`` on the slices ``slice_range`` (both ends included)."""

    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")
    box3d: Optional[list[float]] = Field(None, min_length=6, max_length=6,
                                         description="x0, y0, z0, x1, y1, z1 = i0, j0, k0, i1, j1, k1 voxel "
                                                     "indices of the (Z, Y, X) array (inclusive), whatever "
                                                     "the session's axis")
    box: Optional[list[float]] = Field(None, min_length=4, max_length=4, description="x0, y0, x1, y1 pixels of "
                                       "a slice along the session's axis")
    slice_range: Optional[list[Index]] = Field(None, min_length=2, max_length=2,
                                             description="first, last slice of the box (with box; along the "
                                                         "session's axis)")
    slice: Optional[Index] = Field(None, ge=0, description="the slice the box was drawn on (with box and slice_range): "
                                 "the box bounds the object there only, so a 3D click may reach past it elsewhere")


class Click3DRequest(BaseModel):
    """A corrective click on a volume's 3D result, or on a 2D image's mask: voxel ``zyx``
    (slice, row, column; slice 0 on a 2D image)."""

    zyx: list[Index] = Field(min_length=3, max_length=3,
                             description="z, y, x voxel indices (z = slice; 0 on a 2D image)")
    positive: bool = Field(True, description="true adds the voxel to the object, false removes it")
    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")


class RecistRequest(BaseModel):
    """A RECIST line on one slice: a lesion's long axis, its two endpoints in pixels of that slice."""

    slice: Optional[Index] = Field(None, description=SLICE_DOC)
    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")
    line: list[float] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1 pixels (the endpoints)")


class ScribbleRequest(BaseModel):
    """A scribble on one slice: a polyline whose clicks (one every 8 pixels, at most 16) are added."""

    slice: Optional[Index] = Field(None, description=SLICE_DOC)
    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")
    polyline: list[list[float]] = Field(min_length=1, description="[[x, y], ...] vertices in pixels")
    positive: bool = Field(True, description="true: foreground scribble, false: background")


class LassoRequest(BaseModel):
    """A lasso on one slice: a closed polygon whose filled inside becomes the object's mask prompt there."""

    slice: Optional[Index] = Field(None, description=SLICE_DOC)
    obj_id: int = Field(1, ge=1, le=65535, strict=True, description="object id = label value in the mask")
    polygon: list[list[float]] = Field(min_length=3, description="[[x, y], ...] vertices in pixels")


class Click3DResult(BaseModel):
    """What one 3D click did (see ``medisam.predict.refine3d.ClickOutcome``)."""

    session_id: str
    slice: int = Field(description="the clicked slice along the session's axis")
    obj_id: int
    rejected: bool
    changed_slices: int = Field(description="slices along the session's axis whose mask changed")
    decoded: int
    encoded: int
    undo_steps: int


class PointsRequest(BaseModel):
    slice: Optional[Index] = Field(None, description="index along the session's axis (SessionInfo.axis)")
    obj_id: int = Field(1, ge=1, le=65535, strict=True)
    points: list[list[float]] = Field(min_length=1)


class WindowRequest(BaseModel):
    window: Optional[str] = Field(None, description="CT preset name or 'WIDTH,LEVEL'; null = per-modality default")


class SliceMask(BaseModel):
    session_id: str
    slice: int = Field(description="index along the session's axis (SessionInfo.axis)")
    obj_id: int
    score: float
    area: int
    mask: EncodedArray
    found_box: Optional[list[float]] = Field(None, description="x0, y0, x1, y1: the box a points-only prompt was "
                                             "answered with (box-trained models, medisam.predict.point_box); "
                                             "reuse it as a box prompt. Null otherwise")


#: a propagation's direction (medisam.predict.contract.DIRECTIONS)
Direction = Literal["both", "forward", "backward"]


class PropagateRequest(BaseModel):
    direction: Direction = "both"


class PropagateResult(BaseModel):
    session_id: str
    object_voxels: dict[int, int]
    slices_with_labels: int = Field(description="slices along the session's axis with a label")
    plan: list[str] = Field(default_factory=list, description="the cost of the work as planned, in words "
                            "(a 3D box's views and encodings)")
    notices: list[str] = Field(default_factory=list, description="what this propagation said beyond its result "
                               "(e.g. a view left out of a 3D box's vote)")


class PlanInfo(BaseModel):
    session_id: str
    direction: Direction
    planned_slices: int = Field(description="results the propagation would yield at most (its progress bar)")
    plan: list[str] = Field(description="the cost of the work in words (a 3D box's views and encodings)")


class Capabilities(BaseModel):
    version: str
    model: str
    models: list[str]
    input_formats: list[str]
    output_formats: list[str]
    propagation: bool
    limits: dict[str, int | float]  # byte and count limits as integers (JSON 1073741824, not 1073741824.0)
    auth: bool
