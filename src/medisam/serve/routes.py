"""HTTP routes: sessions (upload, predict, correct, undo, propagate, download), health, capabilities.

Handlers are plain ``def`` functions, so FastAPI runs them in its thread pool; each takes
its session's lock for the whole operation, so one session's requests run one at a time
while different sessions run side by side.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from medisam.client import decode_array, encode_array
from medisam.errors import InputError, PromptError, first_line
from medisam.io import WRITERS, write_mask
from medisam.io.medical_image import MedicalImage
from medisam.io.segment_meaning import parse_labels
from medisam.io.write_seg import seg_reference_problem
from medisam.predict.volume import parse_axis
from medisam.serve.interactive import InteractiveSession, SliceResult, session_axis
from medisam.serve.schemas import (
    Box3DRequest,
    Click3DRequest,
    Click3DResult,
    Capabilities,
    Direction,
    LassoRequest,
    PlanInfo,
    PointsRequest,
    PromptRequest,
    PropagateRequest,
    PropagateResult,
    RecistRequest,
    ScribbleRequest,
    SessionInfo,
    SliceMask,
    WindowRequest,
)
from medisam.serve.sessions import ServerSession, WorkTimeout
from medisam.serve.uploads import (check_image_bytes, guide_bytes, model_frame_bytes, read_upload, save_stream,
                                   session_bytes, upload_extension)

log = logging.getLogger(__name__)

router = APIRouter()

#: How often a long request checks whether its client is still connected, seconds.
DISCONNECT_POLL_S = 0.25

#: Download format name -> (file extension, media type).
DOWNLOAD_FORMATS = {
    "nii.gz": (".nii.gz", "application/gzip"), "nii": (".nii", "application/octet-stream"),
    "nrrd": (".nrrd", "application/octet-stream"), "mha": (".mha", "application/octet-stream"),
    "png": (".png", "image/png"), "npz": (".npz", "application/octet-stream"),
    "dcm": (".dcm", "application/dicom"),
}


def _ctx(request: Request):  # noqa: ANN202 - the ServerContext from app.py
    return request.app.state.medisam


def _parse_window(text: str | None) -> str | tuple[float, float] | None:
    from medisam.io.window import parse_window

    return parse_window(text)


def _info(session: ServerSession) -> SessionInfo:
    st = session.state
    im = st.image
    win = st.window
    return SessionInfo(
        session_id=session.id, filename=session.filename, format=im.source.get("format"),
        shape=list(im.array.shape), is_volume=im.is_volume, is_video=im.is_video, is_rgb=im.is_rgb,
        axis=st.axis, num_slices=st.num_slices, slice_shape=list(st.slice_shape), pixel_mm=list(st.pixel_mm),
        modality=im.modality, spacing=list(im.spacing), origin=list(im.origin),
        direction=list(im.direction),
        window=None if win is None else (win if isinstance(win, str) else f"{win[0]:g},{win[1]:g}"),
        object_ids=st.object_ids, undo_steps=st.can_undo, guides=st.guides,
        dicom=seg_reference_problem(im) is None,  # the DICOM-SEG writer's own rule (a series or one slice)
        warnings=[st.window_warning] if st.window_warning else [],
    )


def _slice_mask(session: ServerSession, res: SliceResult) -> SliceMask:
    # a prompt's own answer names the box its points were answered with; a correction's does not
    found = session.state.found_box(res.slice, res.obj_id) if res.source == "prompt" else None
    return SliceMask(session_id=session.id, slice=res.slice, obj_id=res.obj_id, score=res.score,
                     area=int(res.mask.sum()), mask=encode_array(res.mask),
                     found_box=None if found is None else [float(v) for v in found])


# ------------------------------------------------------------------- service
@router.get("/healthz", tags=["service"])
def healthz() -> dict:
    """Liveness probe (no token needed)."""
    return {"status": "ok"}


@router.get("/capabilities", response_model=Capabilities, tags=["service"])
def capabilities(request: Request) -> Capabilities:
    """Model, accepted upload formats, download formats and limits."""
    from medisam import __version__
    from medisam.io import READERS
    from medisam.models import MODELS

    ctx = _ctx(request)
    s = ctx.settings
    import medisam.predict as predict

    return Capabilities(
        version=__version__, model=ctx.model.name, models=sorted(MODELS),
        input_formats=sorted([*READERS, ".zip"]), output_formats=list(DOWNLOAD_FORMATS),
        propagation=hasattr(predict, "VolumeSession"),
        limits={"max_upload_bytes": s.max_upload_bytes, "max_voxels": s.max_voxels,
                "max_sessions": s.max_sessions, "idle_timeout_s": s.idle_timeout_s,
                "max_zip_members": s.max_zip_members, "max_zip_bytes": s.max_zip_bytes,
                "max_session_bytes": s.max_session_bytes, "max_total_bytes": s.max_total_bytes,
                "max_json_bytes": s.max_json_bytes, "max_points_per_request": s.max_points_per_request,
                "max_points_per_object": s.max_points_per_object},
        auth=s.token is not None,
    )


# ------------------------------------------------------------------ sessions
@router.post("/sessions", response_model=SessionInfo, status_code=201, tags=["sessions"])
def create_session(request: Request,
                   file: UploadFile = File(..., description="image, volume, DICOM file or zipped DICOM series"),
                   modality: Optional[str] = Form(None, description="override the modality (CT, MR...)"),
                   window: Optional[str] = Form(None, description="CT window preset or 'WIDTH,LEVEL'"),
                   axis: Optional[str] = Form(None, description="volumes: the array axis \"slice\" indexes, 0/1/2 "
                                              "or k/j/i (default: the acquisition axis, the thick one)")
                   ) -> SessionInfo:
    """Upload an image and open a session with its own embedding cache. A volume is sliced along
    ``axis`` (default: its acquisition axis, as ``medisam propagate --box3d``); the answer's ``axis`` says which."""
    ctx = _ctx(request)
    s = ctx.settings
    ext = upload_extension(file.filename)
    win = _parse_window(window)
    if axis is not None and axis.strip():
        parse_axis(axis)  # a bad value is a 400 before the upload is read
    if modality is not None and (not modality.isalnum() or len(modality) > 8):
        raise InputError(f"modality {modality!r} must be a short code such as CT or MR")
    session = ctx.sessions.reserve(Path(file.filename or "upload").name[-128:])
    try:
        with session.lock:
            image = _read_file(ctx, session.workdir, file, "upload", ext, modality)
            along = session_axis(image, axis)  # 2D images and videos: axis 0 only
            held = session_bytes(image, model_frame_bytes(ctx.model), along)
            check_image_bytes(held, s.max_session_bytes)  # a SAM 2 model's frames along the axis
            ctx.sessions.claim_bytes(session, held, s.max_total_bytes)
            session.state = InteractiveSession(ctx.model, image, cache=ctx.new_cache(), window=win,
                                               max_points=s.max_points_per_object, axis=along)
            session.touch()
    except BaseException:
        ctx.sessions.discard(session)
        raise
    log.info("session %s opened: %s %s, slices along axis %d", session.id[:6], image.source.get("format"),
             image.array.shape, session.state.axis)
    return _info(session)


def _read_file(ctx, folder: Path, file: UploadFile, stem: str, ext: str,  # noqa: ANN001 - ctx
               modality: Optional[str]) -> MedicalImage:
    """An uploaded file saved in ``folder`` (of the session) and read within the server's limits."""
    s = ctx.settings
    saved = folder / f"{stem}{ext}"
    save_stream(file.file, saved, s.max_upload_bytes)
    return read_upload(saved, folder, max_voxels=s.max_voxels, max_members=s.max_zip_members,
                       max_bytes=s.max_zip_bytes, max_ratio=s.max_zip_ratio,
                       modality=modality.upper() if modality else None, max_image_bytes=s.max_session_bytes,
                       frame_bytes=model_frame_bytes(ctx.model))


@router.post("/sessions/{sid}/guides", response_model=SessionInfo, tags=["sessions"])
def add_guide(sid: str, request: Request,
              file: UploadFile = File(..., description="another image of the session's volume (e.g. T1c), same grid")
              ) -> SessionInfo:
    """Give the 3D clicks another channel of the volume: the click walker sees it beside the
    session's image, the model does not (``VolumeSession(guides=...)``)."""
    ctx = _ctx(request)
    ext = upload_extension(file.filename)
    session = _session(request, sid)
    with session.locked():
        # each guide in a folder of its own, removed when refused: a refused file left behind
        # took the next guide's name (a 500 on every later upload), and a zipped guide the
        # folder of a zipped series
        folder = Path(tempfile.mkdtemp(prefix="guide-", dir=session.workdir))
        before = session.nbytes
        try:
            guide = _read_file(ctx, folder, file, "guide", ext, session.state.image.modality)
            ctx.sessions.claim_bytes(session, before + guide_bytes(guide), ctx.settings.max_total_bytes)
            session.state.add_guide(guide)
        except BaseException:
            session.nbytes = before
            shutil.rmtree(folder, ignore_errors=True)
            raise
        session.touch()
        return _info(session)


@router.get("/sessions", tags=["sessions"])
def list_sessions(request: Request) -> dict:
    """Number of open sessions (ids are not listed: they are the only key to a session)."""
    return {"open": len(_ctx(request).sessions)}


@router.get("/sessions/{sid}", response_model=SessionInfo, tags=["sessions"])
def get_session(sid: str, request: Request) -> SessionInfo:
    session = _ctx(request).sessions.get(sid)
    with session.locked():
        return _info(session)


@router.delete("/sessions/{sid}", tags=["sessions"])
def delete_session(sid: str, request: Request) -> dict:
    """Close a session and delete its files."""
    _ctx(request).sessions.close(sid)
    return {"closed": sid}


def _check_points(request: Request, points: list | None) -> None:
    """PromptError (400) for more clicks in one request than the server allows."""
    limit = _ctx(request).settings.max_points_per_request
    if points is not None and len(points) > limit:
        raise PromptError(f"{len(points)} points in one request, more than the limit of {limit}")


def _session(request: Request, sid: str) -> ServerSession:
    """The open session ``sid`` (404 otherwise); callers then take its lock."""
    return _ctx(request).sessions.get(sid)


def _on_slice(request: Request, session: ServerSession, call) -> SliceMask:  # noqa: ANN001 - call(state) -> SliceResult
    """Run one prompt call on ``session`` under its lock and the inference limit; answer its slice mask."""
    with session.locked(), _ctx(request).inference:
        res = call(session.state)
        session.touch()
        return _slice_mask(session, res)


@router.post("/sessions/{sid}/predict", response_model=SliceMask, tags=["prompts"])
def predict(sid: str, body: PromptRequest, request: Request) -> SliceMask:
    """Segment object ``obj_id`` on a slice from a box, points and/or a mask (replaces its earlier prompts there)."""
    _check_points(request, body.points)
    session = _session(request, sid)  # an unknown session is a 404 before the mask is decoded
    mask = None
    if body.mask is not None:
        try:
            mask = decode_array(body.mask.model_dump(), max_bytes=_ctx(request).settings.max_voxels)
        except (ValueError, TypeError, OverflowError) as exc:
            raise PromptError(f"mask prompt cannot be decoded: {first_line(exc)}") from None
    return _on_slice(request, session, lambda st: st.segment(body.slice, body.obj_id, box=body.box, points=body.points,
                                                         mask=mask))


@router.post("/sessions/{sid}/box3d", response_model=SliceMask, tags=["prompts"])
def add_box3d(sid: str, body: Box3DRequest, request: Request) -> SliceMask:
    """Prompt an object with a 3D box (or a box plus a slice range), as ``medisam propagate --box3d``.

    Returns the seed slice's mask; ``/propagate`` then segments the box's slices only.
    """
    return _on_slice(request, _session(request, sid),
                     lambda st: st.add_box3d(body.box3d, body.obj_id, box=body.box, slice_range=body.slice_range,
                                             slice=body.slice))


@router.post("/sessions/{sid}/click3d", response_model=Click3DResult, tags=["prompts"])
def add_click3d(sid: str, body: Click3DRequest, request: Request) -> Click3DResult:
    """A corrective click on a volume, or on a 2D image (``zyx`` = ``[0, y, x]``): the object's
    mask is refined around the model's result with the click by a random walker
    (``predict.refine3d`` in 3D, ``predict.refine2d`` in 2D: no encoder or decoder run).
    ``rejected`` when the click could not be honoured (nothing changed); undo takes it back in
    ``undo_steps`` calls."""
    session = _session(request, sid)
    with session.locked(), _ctx(request).inference:
        out = session.state.add_click(body.zyx, body.positive, body.obj_id)
        session.touch()
        return Click3DResult(session_id=sid, slice=out.slice, obj_id=body.obj_id, rejected=out.rejected,
                             changed_slices=len(out.changed), decoded=out.decoded, encoded=out.encoded,
                             undo_steps=out.undo_steps)


@router.post("/sessions/{sid}/recist", response_model=SliceMask, tags=["prompts"])
def add_recist(sid: str, body: RecistRequest, request: Request) -> SliceMask:
    """Prompt an object with a RECIST line (a lesion's long axis) on a slice: on a volume the
    lesion's 3D box (z extent from the line's length in mm), then ``/propagate``; replaces the
    object's earlier prompts. One undo step."""
    return _on_slice(request, _session(request, sid), lambda st: st.add_recist(body.slice, body.line, body.obj_id))


@router.post("/sessions/{sid}/scribble", response_model=SliceMask, tags=["prompts"])
def add_scribble(sid: str, body: ScribbleRequest, request: Request) -> SliceMask:
    """A scribble on a slice: clicks sampled along the polyline, added to the object's prompts there."""
    _check_points(request, body.polyline)
    return _on_slice(request, _session(request, sid),
                     lambda st: st.add_scribble(body.slice, body.polyline, body.positive, body.obj_id))


@router.post("/sessions/{sid}/lasso", response_model=SliceMask, tags=["prompts"])
def add_lasso(sid: str, body: LassoRequest, request: Request) -> SliceMask:
    """A lasso on a slice: the filled polygon is the object's mask prompt there (replaces its prompts there)."""
    _check_points(request, body.polygon)
    return _on_slice(request, _session(request, sid), lambda st: st.add_lasso(body.slice, body.polygon, body.obj_id))


@router.post("/sessions/{sid}/points", response_model=SliceMask, tags=["prompts"])
def add_points(sid: str, body: PointsRequest, request: Request) -> SliceMask:
    """Add corrective clicks to an object on a slice (kept with its earlier prompts)."""
    _check_points(request, body.points)
    return _on_slice(request, _session(request, sid),
                     lambda st: st.add_points(body.slice, body.obj_id, points=body.points))


def _objects_left(session: ServerSession) -> dict:
    """The answer of an edit that drops objects: those left and the undo steps."""
    return {"object_ids": session.state.object_ids, "undo_steps": session.state.can_undo}


@router.post("/sessions/{sid}/reset", tags=["prompts"])
def reset(sid: str, request: Request) -> dict:
    """Clear every object (prompts and masks; the image and its embeddings stay). One undo step:
    ``/undo`` brings them back, propagated slices included."""
    session = _session(request, sid)
    with session.locked():
        session.state.reset()
        return _objects_left(session)


@router.delete("/sessions/{sid}/objects/{obj_id}", tags=["prompts"])
def remove_object(sid: str, obj_id: int, request: Request) -> dict:
    """Erase object ``obj_id`` on every slice. One undo step: ``/undo`` brings it back."""
    session = _session(request, sid)
    with session.locked():
        session.state.remove_object(obj_id)
        return _objects_left(session)


@router.post("/sessions/{sid}/undo", tags=["prompts"])
def undo(sid: str, request: Request) -> dict:
    """Revert the last prompt action (prediction, correction, 3D box, removal, reset).

    Propagation is not an undo step: it adds results without changing prompts; propagate
    again after an undo to bring the other slices up to date.
    """
    session = _session(request, sid)
    with session.locked():
        session.state.take_notices()  # the answer says what this undo said (SAM 2, past its kept steps: slices dropped)
        undone = session.state.undo()
        return {"undone": undone, "undo_steps": session.state.can_undo, "notices": session.state.take_notices()}


@router.post("/sessions/{sid}/window", response_model=SessionInfo, tags=["prompts"])
def set_window(sid: str, body: WindowRequest, request: Request) -> SessionInfo:
    """Change the intensity window used by later predictions."""
    session = _session(request, sid)
    win = _parse_window(body.window)
    with session.locked():
        session.state.set_window(win)
        return _info(session)


@router.get("/sessions/{sid}/plan", response_model=PlanInfo, tags=["prompts"])
def plan(sid: str, request: Request,
         direction: Direction = Query("both")) -> PlanInfo:
    """What a propagation would cost now, before it runs: its progress bar's length and, per 3D box,
    the views and encodings of its plan (the lines the CLI prints before the work)."""
    session = _session(request, sid)
    with session.locked() as st:
        return PlanInfo(session_id=session.id, direction=direction, planned_slices=st.planned_slices(direction),
                        plan=st.plan_lines(direction))


@router.post("/sessions/{sid}/propagate", response_model=PropagateResult, tags=["prompts"])
async def propagate(sid: str, request: Request, body: Optional[PropagateRequest] = None) -> PropagateResult:
    """Propagate every prompted object through the volume (or video); no body = ``{"direction": "both"}``.

    The work runs slice by slice in a worker thread and stops between slices when the
    client disconnects or the server's time limit passes (slices done so far are kept,
    so calling again continues).
    """
    session = _session(request, sid)
    ctx = _ctx(request)
    stop = threading.Event()
    deadline = time.monotonic() + ctx.settings.request_timeout_s
    work = asyncio.get_running_loop().run_in_executor(
        None, _propagate_locked, session, ctx, (body or PropagateRequest()).direction, stop, deadline)
    try:
        while not (await asyncio.wait({work}, timeout=DISCONNECT_POLL_S))[0]:
            if await request.is_disconnected():
                stop.set()  # the worker stops after its current slice and releases the lock
    finally:
        stop.set()  # also when this request is cancelled (server shutdown)
    return await work


def _propagate_locked(session: ServerSession, ctx, direction: str, stop: threading.Event,  # noqa: ANN001
                      deadline: float) -> PropagateResult:
    with session.locked() as st, ctx.inference:
        total, plan_lines = st.planned_slices(direction), st.propagation_plan(direction)

        def check(done: int) -> None:
            """Stop before the next slice when the client left or the time is up."""
            if stop.is_set():
                log.info("session %s: propagation cancelled (client gone) after %d of %d slices",
                         session.id[:6], done, total)
                raise WorkTimeout("propagation cancelled: the client disconnected")
            if time.monotonic() > deadline:
                raise WorkTimeout(f"propagation stopped at the server's time limit of "
                                  f"{ctx.settings.request_timeout_s:g} s after {done} of {total} slices; "
                                  "the slices done are kept: propagate again to continue")

        check(0)  # the wait for the lock may have outlasted the client
        slices = st.iter_propagate(direction)
        try:
            for done, _ in enumerate(slices, start=1):
                check(done)
        finally:
            slices.close()  # VolumeSession keeps the completed slices
        labels = st.label_image().array
        if not labels.any():
            raise PromptError("propagation produced an empty mask: check the prompts (or the window)")
        session.touch()
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        per_slice = st.labelled_slices()
        return PropagateResult(session_id=session.id, object_voxels={int(i): int(c) for i, c in zip(ids, counts)},
                               slices_with_labels=int(per_slice.sum()), plan=plan_lines,
                               notices=st.take_notices())


@router.get("/sessions/{sid}/labels", tags=["results"])
def get_labels(sid: str, request: Request,
               slice: Optional[int] = Query(None, description="a slice along the session's axis; none: all")) -> dict:
    """The current label map as an encoded array: one slice along the session's axis, or the whole
    image in its own (Z, Y, X) order."""
    session = _session(request, sid)
    with session.locked():
        st = session.state
        arr = st.labels_slice(slice) if (slice is not None or not st.image.is_volume) else st.labels
        return encode_array(arr)


@router.get("/sessions/{sid}/mask", tags=["results"],
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_mask(sid: str, request: Request, format: str = Query("nii.gz", description=", ".join(DOWNLOAD_FORMATS)),
                  slice: Optional[int] = Query(None, description="for png of a volume: which slice (along the "
                                               "session's axis)"),
                  labels: Optional[str] = Query(None, description="dcm: segment meanings, JSON label value -> "
                                                "name or {name, category, type, color}, e.g. {\"1\": \"liver\"}")
                  ) -> Response:
    """The label map as a file (same grid and geometry as the upload); DICOM-SEG segments named by ``labels``."""
    fmt = format.lower().lstrip(".")
    segments = parse_labels(labels) if labels else None
    if fmt not in DOWNLOAD_FORMATS:
        raise InputError(f"unknown format {format!r}; use one of {', '.join(DOWNLOAD_FORMATS)}")
    ext, media = DOWNLOAD_FORMATS[fmt]
    assert ext in WRITERS
    session = _session(request, sid)
    with session.locked():
        st = session.state
        out = session.workdir / f"download-{secrets.token_hex(8)}{ext}"
        if slice is not None and not st.image.is_volume:
            st.check_slice(slice)  # as /labels: a slice of a 2D image is a 400, not ignored
        try:
            if fmt == "png" and st.image.is_volume:
                if slice is None:
                    raise InputError("png holds one slice of a volume: pass slice=K, or use nii.gz")
                write_mask(st.labels_slice(slice), out)
            else:
                write_mask(st.label_image(), out, reference=st.image, segments=segments)
            data = out.read_bytes()
        except InputError as exc:
            raise type(exc)(str(exc).replace(str(out), f"mask{ext}")) from None
        finally:
            out.unlink(missing_ok=True)
        session.touch()
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="mask{ext}"'})
