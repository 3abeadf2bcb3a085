"""A thin client for ``medisam serve`` that needs only numpy and httpx.

Used by the tests, the load test and the 3D Slicer module (which cannot import torch)::

    from medisam.client import Client
    with Client("http://127.0.0.1:8000", token="...") as c:
        mask = c.segment(image_array, box=(x0, y0, x1, y1))          # one 2D image
        with c.open_session("ct.nii.gz") as s:                         # a volume
            s.predict(slice=40, box=(...), obj_id=1)
            s.add_points(slice=40, points=[(x, y, 0)], obj_id=1)
            s.propagate()
            s.download("nii.gz", "mask.nii.gz")

Arrays are uploaded without any imaging library: 2D arrays as a CVPR24-style ``.npz``,
3D arrays as an NRRD (raw, LPS geometry in ITK order) written here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx
import numpy as np

__all__ = ["Client", "ClientSession", "ServerError", "decode_array", "encode_array", "nrrd_bytes"]


class ServerError(RuntimeError):
    """The server answered with an error; ``status`` is the HTTP code, the message its ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------- wire format
def encode_array(array: np.ndarray) -> dict[str, Any]:
    """``{"shape", "dtype", "data"}`` with ``data`` = base64(zlib(C-order bytes)); bool is sent as uint8."""
    a = np.ascontiguousarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return {"shape": list(a.shape), "dtype": a.dtype.str,
            "data": base64.b64encode(zlib.compress(a.tobytes(), 1)).decode("ascii")}


def decode_array(obj: dict[str, Any], max_bytes: int = 1 << 31) -> np.ndarray:
    """Inverse of :func:`encode_array` (raises ValueError on inconsistent or oversized data)."""
    dtype = np.dtype(obj["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"unsupported array dtype {dtype}")
    shape = tuple(int(s) for s in obj["shape"])
    if any(s < 0 for s in shape):
        raise ValueError(f"bad array shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected > max_bytes:
        raise ValueError(f"array of {expected} bytes exceeds the limit of {max_bytes}")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(base64.b64decode(obj["data"], validate=True), expected + 1)
    except zlib.error as exc:  # base64 of bytes that are not zlib
        raise ValueError(f"array data is not zlib-compressed ({exc})") from None
    if len(raw) != expected or d.unconsumed_tail:
        raise ValueError(f"array data has the wrong size for shape {shape} and dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def nrrd_bytes(array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               origin: Sequence[float] = (0.0, 0.0, 0.0),
               direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> bytes:
    """A raw NRRD of a ``(Z, Y, X)`` volume with LPS geometry given in ITK order.

    ``direction`` is the row-major 3x3 matrix whose *columns* are the directions of the
    i, j, k axes (as SimpleITK/MedicalImage store it); ``spacing``/``origin`` are
    ``(x, y, z)`` mm. NRRD lists axes fastest first (i, j, k), matching C order of ``(Z, Y, X)``.
    """
    a = np.ascontiguousarray(array)
    if a.ndim != 3:
        raise ValueError(f"nrrd_bytes writes (Z, Y, X) volumes, got shape {a.shape}")
    types = {"u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32", "i4": "int32",
             "f4": "float", "f8": "double"}
    if a.dtype == bool:
        a = a.astype(np.uint8)
    key = a.dtype.str[1:]
    if key not in types:
        a, key = a.astype(np.float32), "f4"
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    sp = [float(s) for s in spacing]
    axes = " ".join("(" + ",".join(repr(float(v)) for v in d[:, i] * sp[i]) + ")" for i in range(3))
    header = ("NRRD0004\n"
              f"type: {types[key]}\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {a.shape[2]} {a.shape[1]} {a.shape[0]}\n"
              f"space directions: {axes}\nkinds: domain domain domain\n"
              f"endian: {'little' if a.dtype.byteorder in '<=|' else 'big'}\nencoding: raw\n"
              f"space origin: ({','.join(repr(float(v)) for v in origin)})\n\n")
    return header.encode("ascii") + a.tobytes()


def _npz_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, imgs=np.ascontiguousarray(array))
    return buf.getvalue()


# ---------------------------------------------------------------------- client
class Client:
    """Talks to one ``medisam serve``; pass ``http`` to reuse an httpx.Client (or FastAPI TestClient).

    ``token`` defaults to ``$MEDISAM_TOKEN``, the variable ``medisam serve`` reads, so a token
    never has to appear in code or on a command line.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 300.0, http: httpx.Client | None = None):
        if token is None:
            token = os.environ.get("MEDISAM_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is None:
            self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
            self._owns = True
        else:
            self._http = http
            self._http.headers.update(headers)
            self._owns = False

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self._http.close()

    # -------------------------------------------------------------- plumbing
    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise :class:`ServerError` with the server's message on 4xx/5xx."""
        r = self._http.request(method, url, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ServerError(r.status_code, str(detail))
        return r

    def healthz(self) -> dict:
        return self.request("GET", "/healthz").json()

    def capabilities(self) -> dict:
        return self.request("GET", "/capabilities").json()

    # -------------------------------------------------------------- sessions
    def open_session(self, image: str | Path | np.ndarray, *, filename: str | None = None,
                     spacing: Sequence[float] | None = None, origin: Sequence[float] | None = None,
                     direction: Sequence[float] | None = None, modality: str | None = None,
                     window: str | None = None, axis: int | str | None = None) -> "ClientSession":
        """Upload a file (any format the server reads, or a zipped DICOM series) or an array.

        Arrays: ``(H, W)``/``(H, W, 3)`` go as ``.npz``; ``(Z, Y, X)`` as NRRD with the given
        LPS geometry (ITK order). ``modality`` ("CT", "MR"...) picks intensity handling. ``axis``
        (volumes: 0/1/2 or k/j/i) is the array axis every ``slice`` indexes; the server's default
        is the volume's acquisition axis, given back as ``info["axis"]``.
        """
        name, payload = _upload(image, filename, spacing, origin, direction)
        data = {k: str(v) for k, v in (("modality", modality), ("window", window), ("axis", axis)) if v is not None}
        info = self.request("POST", "/sessions", files={"file": (name, payload, "application/octet-stream")},
                            data=data).json()
        return ClientSession(self, info)

    def segment(self, image: str | Path | np.ndarray, box: Sequence[float], *, slice: int | None = None,
                modality: str | None = None) -> np.ndarray:
        """Segment one object in a 2D image (or one slice) from an XYXY box; returns ``(H, W)`` bool."""
        with self.open_session(image, modality=modality) as s:
            return s.predict(slice=slice, box=box)

    def open_sessions(self) -> int:
        """How many sessions the server holds (ids are secret, so they are not listed)."""
        return int(self.request("GET", "/sessions").json()["open"])


def _upload(image: str | Path | np.ndarray, filename: str | None, spacing: Sequence[float] | None,
            origin: Sequence[float] | None, direction: Sequence[float] | None) -> tuple[str, bytes]:
    """``(name, bytes)`` of an upload: a file as it is; ``(H, W)``/``(H, W, 3)`` arrays as ``.npz``,
    ``(Z, Y, X)`` arrays as NRRD with the given LPS geometry (ITK order)."""
    if isinstance(image, np.ndarray):
        is_volume = image.ndim == 3 and (image.shape[-1] != 3 or (spacing is not None and len(spacing) == 3))
        if is_volume:
            return filename or "volume.nrrd", nrrd_bytes(image, spacing or (1.0, 1.0, 1.0), origin or (0.0, 0.0, 0.0),
                                                         direction or (1, 0, 0, 0, 1, 0, 0, 0, 1))
        return filename or "image.npz", _npz_bytes(image)
    path = Path(image)
    return filename or path.name, path.read_bytes()


class ClientSession:
    """One server session; methods mirror :class:`medisam.serve.interactive.InteractiveSession`."""

    def __init__(self, client: Client, info: dict):
        self.client = client
        self.info = info
        self.id: str = info["session_id"]
        self.last_score: float | None = None
        self.last_slice: int | None = None
        #: XYXY pixels: the box the server answered the last points-only prompt with (None otherwise)
        self.last_found_box: tuple[float, float, float, float] | None = None

    def __enter__(self) -> "ClientSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, tail: str = "") -> str:
        return f"/sessions/{self.id}{tail}"

    def refresh(self) -> dict:
        self.info = self.client.request("GET", self._url()).json()
        return self.info

    def add_guide(self, image: str | Path | np.ndarray, *, filename: str | None = None) -> int:
        """Give the 3D clicks another channel of this volume (a file, or a ``(Z, Y, X)`` array sent
        with the session's geometry); returns how many guides the session has."""
        i = self.info
        name, payload = _upload(image, filename, i["spacing"], i["origin"], i["direction"])
        self.info = self.client.request("POST", self._url("/guides"),
                                        files={"file": (name, payload, "application/octet-stream")}).json()
        return int(self.info["guides"])

    def _mask(self, r: httpx.Response) -> np.ndarray:
        body = r.json()
        self.last_score = body["score"]
        self.last_slice = body["slice"]
        found = body.get("found_box")
        self.last_found_box = None if found is None else tuple(float(v) for v in found)
        return decode_array(body["mask"]).astype(bool)

    def predict(self, slice: int | None = None, *, box: Sequence[float] | None = None,
                points: Sequence[Sequence[float]] | None = None, mask: np.ndarray | None = None,
                obj_id: int = 1) -> np.ndarray:
        """New prompts for object ``obj_id`` on a slice -> its ``(H, W)`` bool mask (score in ``last_score``;
        for points alone, the box they were answered with in ``last_found_box``)."""
        body: dict[str, Any] = {"slice": slice, "obj_id": obj_id}
        if box is not None:
            body["box"] = [float(v) for v in box]
        if points is not None:
            body["points"] = [[float(v) for v in p] for p in points]
        if mask is not None:
            body["mask"] = encode_array(np.asarray(mask, dtype=bool))
        return self._mask(self.client.request("POST", self._url("/predict"), json=body))

    def add_box3d(self, box3d: Sequence[int] | None = None, *, box: Sequence[float] | None = None,
                  slice_range: Sequence[int] | None = None, slice: int | None = None, obj_id: int = 1) -> np.ndarray:
        """Prompt ``obj_id`` with a 3D box ``(x0, y0, z0, x1, y1, z1)`` (voxel indices, inclusive), or a
        2D ``box`` with ``slice_range=(first, last)`` and the ``slice`` it was drawn on; returns the seed
        slice's mask. Then :meth:`propagate`."""
        body: dict[str, Any] = {"obj_id": obj_id}
        if box3d is not None:
            body["box3d"] = [int(v) for v in box3d]
        if box is not None:
            body["box"] = [float(v) for v in box]
        if slice_range is not None:
            body["slice_range"] = [int(v) for v in slice_range]
        if slice is not None:
            body["slice"] = int(slice)
        return self._mask(self.client.request("POST", self._url("/box3d"), json=body))

    def add_click(self, zyx: Sequence[int], positive: bool = True, obj_id: int = 1) -> dict[str, Any]:
        """A corrective click at voxel ``(z, y, x)`` of a volume (``(0, y, x)`` on a 2D image): the
        server refines the object's mask around it; returns what it did (``rejected``,
        ``changed_slices``, ``undo_steps``)."""
        body = {"zyx": [int(v) for v in zyx], "positive": bool(positive), "obj_id": obj_id}
        return self.client.request("POST", self._url("/click3d"), json=body).json()

    def add_recist(self, slice: int | None, line: Sequence[float], obj_id: int = 1) -> np.ndarray:
        """A RECIST line ``(x0, y0, x1, y1)`` (a lesion's long axis, pixels) on ``slice``: on a volume the
        lesion's 3D box; returns the seed slice's mask. Then :meth:`propagate`."""
        body = {"slice": slice, "obj_id": obj_id, "line": [float(v) for v in line]}
        return self._mask(self.client.request("POST", self._url("/recist"), json=body))

    def add_scribble(self, slice: int | None, polyline: Sequence[Sequence[float]], positive: bool = True,
                     obj_id: int = 1) -> np.ndarray:
        """A scribble (``[(x, y), ...]`` pixels) on ``slice``: clicks along it, added to the object's prompts."""
        body = {"slice": slice, "obj_id": obj_id, "positive": bool(positive),
                "polyline": [[float(v) for v in p] for p in polyline]}
        return self._mask(self.client.request("POST", self._url("/scribble"), json=body))

    def add_lasso(self, slice: int | None, polygon: Sequence[Sequence[float]], obj_id: int = 1) -> np.ndarray:
        """A lasso (closed polygon ``[(x, y), ...]`` pixels) on ``slice``: its inside is the object's mask prompt."""
        body = {"slice": slice, "obj_id": obj_id, "polygon": [[float(v) for v in p] for p in polygon]}
        return self._mask(self.client.request("POST", self._url("/lasso"), json=body))

    def add_points(self, slice: int | None = None, *, points: Sequence[Sequence[float]], obj_id: int = 1) -> np.ndarray:
        """Corrective clicks ``(x, y, label)`` for an object already segmented on this slice."""
        body = {"slice": slice, "obj_id": obj_id, "points": [[float(v) for v in p] for p in points]}
        return self._mask(self.client.request("POST", self._url("/points"), json=body))

    def undo(self) -> bool:
        return bool(self.client.request("POST", self._url("/undo")).json()["undone"])

    def reset(self) -> None:
        """Clear every object (one undo step)."""
        self.client.request("POST", self._url("/reset"))

    def remove_object(self, obj_id: int) -> None:
        """Erase object ``obj_id`` on every slice (one undo step)."""
        self.client.request("DELETE", self._url(f"/objects/{int(obj_id)}"))

    def set_window(self, window: str | None) -> None:
        self.client.request("POST", self._url("/window"), json={"window": window})

    def plan(self, direction: str = "both") -> dict:
        """What :meth:`propagate` would cost now: ``planned_slices`` and ``plan`` (per 3D box, its
        views and encodings, in words), before any work."""
        return self.client.request("GET", self._url("/plan"), params={"direction": direction}).json()

    def propagate(self, direction: str = "both") -> dict:
        """Propagate all prompted objects through the volume; returns voxel counts per object, the
        ``plan`` it followed and its ``notices`` (e.g. a view left out of a 3D box's vote)."""
        return self.client.request("POST", self._url("/propagate"), json={"direction": direction}).json()

    def labels(self, slice: int | None = None) -> np.ndarray:
        """The current label map: ``(H, W)`` of one slice, or the whole array when ``slice`` is None."""
        params = {} if slice is None else {"slice": slice}
        return decode_array(self.client.request("GET", self._url("/labels"), params=params).json())

    def download(self, format: str = "nii.gz", path: str | Path | None = None,
                 slice: int | None = None, labels: Mapping[int, Any] | None = None) -> bytes:
        """The mask as a file: nii.gz, nii, nrrd, mha, png (2D or one ``slice``), npz, dcm (DICOM-SEG).

        ``labels`` (dcm): label value -> name (``{1: "liver"}``) or ``{name, category, type, color}``;
        the server adds the SNOMED CT codes and colour (:mod:`medisam.io.segment_meaning`).
        """
        params: dict[str, Any] = {"format": format}
        if labels:
            params["labels"] = json.dumps({str(k): v for k, v in labels.items()})
        if slice is not None:
            params["slice"] = slice
        data = self.client.request("GET", self._url("/mask"), params=params).content
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.client.request("DELETE", self._url())
        except ServerError as exc:
            if exc.status != 404:
                raise
