"""Benchmark datasets -> cases -> targets (shared with fine-tuning).

Layouts recognised (the dataset name is the folder name):

* **2D folders**: ``images/<id>.<ext>`` and ``masks/<id>.<ext>`` with the same stem;
  masks are integer label maps (0 = background; a PNG holding only 0 and 255 is one object,
  a palette PNG gives its indices, as medisam writes them).
* **nnU-Net / Decathlon**: ``imagesTr/<case>_0000.nii.gz`` (channel ``_000C``; channel 0 is
  read unless ``channel`` is set) and ``labelsTr/<case>.nii.gz``, with ``dataset.json``
  when present (``modality``/``channel_names`` and ``labels``). The Decathlon's own layout,
  ``imagesTr/<case>.nii.gz`` with a case's modalities as the volumes of one 4D file, is read
  the same way (channel 0 unless ``channel`` is set; the other volumes are the guides).
* **CVPR24 npz**: a folder of ``.npz`` files (or one file) with ``imgs`` and ``gts``.

Per-dataset settings come, in increasing priority, from ``dataset.json``, a ``labels.json``
(``{"1": "liver", ...}``), a sidecar ``medisam.json`` in the dataset folder, and explicit
arguments (CLI / benchmark config): ``modality`` (a DICOM code such as CT, MR, US, ES, OP,
SM), ``targets`` (``label``: one target per label value; ``component``: one per
connected component of each label; ``instance``: every label value is one instance of the
class ``target_name``), ``min_area`` (pixels/voxels; smaller targets are skipped),
``max_targets`` (keep the largest N per case), ``labels`` (value -> name), ``channel`` and
``guides`` (false: the 3D click walker sees only the channel the model reads, not the case's
other channels).

Every file is read through :func:`medisam.io.read_image`. Discovery
(:func:`discover_cases`) only lists files, so one bad case never hides the others;
:meth:`CaseRef.load` raises :class:`~medisam.errors.InputError` for a missing mask,
mismatched shapes or an unreadable file.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from scipy import ndimage

from medisam.errors import InputError, MedisamError
from medisam.io import MedicalImage, read_image
from medisam.io.label_png import read_label_map
from medisam.io.medical_image import KNOWN_MODALITIES
from medisam.io.header import read_header
from medisam.label_boxes import label_slices

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".npz",
              ".dcm")
TARGET_MODES = ("label", "component", "instance")

#: dataset.json modality names -> DICOM modality codes.
_MODALITY_ALIASES = {"MRI": "MR", "T1": "MR", "T2": "MR", "FLAIR": "MR", "T1C": "MR", "T1GD": "MR", "T1W": "MR",
                     "T2W": "MR", "ADC": "MR", "DWI": "MR", "NONCONTRASTCT": "CT", "CONTRASTCT": "CT",
                     "ULTRASOUND": "US", "XRAY": "XR", "X-RAY": "XR", "PET": "PT", "ENDOSCOPY": "ES",
                     "MICROSCOPY": "SM"}


def normalise_modality(text: str | None) -> str | None:
    """``"MRI"``/``"T1"`` -> ``"MR"``, ``"ct"`` -> ``"CT"``; other strings upper-cased."""
    if text is None:
        return None
    key = str(text).strip().upper()
    return _MODALITY_ALIASES.get(key.replace(" ", ""), key)


def whole_number(value: Any, what: str, low: int, hint: str = "") -> int:
    """``value`` if it is an int >= ``low`` (not a bool, a float or text), else a one-line InputError naming
    ``what`` (``hint`` ends it): the benchmark's one whole-number check (a seed -1 was numpy's traceback,
    ``max_targets`` 0 ran every case into an error row)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{what} must be a whole number >= {low}, got {value!r}{hint}")
    return value


@dataclass(frozen=True)
class DatasetOptions:
    """Settings for one dataset (see the module docstring); None = take from the files."""

    modality: str | None = None
    targets: str | None = None
    target_name: str | None = None
    min_area: int | None = None
    max_targets: int | None = None
    labels: dict[int, str] | None = None
    channel: int | None = None
    guides: bool | None = None  # None/True: a multi-channel case's other channels guide the 3D clicks

    def check_bounds(self, where: str) -> None:
        """``min_area`` >= 0, ``max_targets`` >= 1 and ``channel`` >= 0 where set, before any work:
        ``max_targets`` 0 or ``channel`` -1 turned every case into an error row, ``min_area`` -5 ran as 1."""
        for name, low in (("min_area", 0), ("max_targets", 1), ("channel", 0)):
            value = getattr(self, name)
            if value is not None:
                whole_number(value, f"--{name.replace('_', '-')} ({name}) of {where}", low)

    def merged(self, other: "DatasetOptions") -> "DatasetOptions":
        """Values of ``other`` where set, else ours."""
        return DatasetOptions(**{k: (getattr(other, k) if getattr(other, k) is not None else getattr(self, k))
                                 for k in self.__dataclass_fields__})

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DatasetOptions":
        known = set(DatasetOptions.__dataclass_fields__)
        unknown = set(d) - known - {"path", "name", "max_cases"}
        if unknown:
            raise InputError(f"unknown dataset setting(s): {', '.join(sorted(unknown))}")
        d = {k: v for k, v in d.items() if k in known}
        if d.get("labels") is not None:
            d["labels"] = {int(k): str(v) for k, v in d["labels"].items()}
        if d.get("targets") is not None and d["targets"] not in TARGET_MODES:
            raise InputError(f"targets must be one of {', '.join(TARGET_MODES)}, got {d['targets']!r}")
        return DatasetOptions(**d)


@dataclass(frozen=True)
class Target:
    """One object to segment, kept as its bounding box: ``box_mask`` (bool) covers the label
    map's ``origin + [0, box_mask.shape)``; :attr:`mask` gives it on the whole grid.

    ``name`` groups results across cases (the label name, e.g. "liver", "label2", or the
    instance class); ``id`` is unique within the case ("2", "2.c3" for component 3 of
    label 2, "17" for instance 17); ``label`` is the label value; ``area`` in pixels/voxels;
    ``shape`` the label map's spatial shape. A whole-grid mask per target made a case's memory
    grow with its objects (400 nuclei in a 48 x 448 x 448 volume: 3.8 GB before any work).
    """

    name: str
    id: str
    label: int
    box_mask: np.ndarray
    area: int
    origin: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def box(self) -> tuple[slice, ...]:
        """The target's bounding box on the label map's grid."""
        return tuple(slice(o, o + n) for o, n in zip(self.origin, self.box_mask.shape))

    @property
    def mask(self) -> np.ndarray:
        """``(shape)`` bool on the whole grid, built on each call (keep it only while needed)."""
        full = np.zeros(self.shape, dtype=bool)
        full[self.box] = self.box_mask
        return full

    @classmethod
    def from_crop(cls, name: str, id: str, label: int, mask: np.ndarray, area: int,
           offset: tuple[int, ...] | None = None, shape: tuple[int, ...] | None = None) -> "Target":
        """The target of ``mask`` (bool; a crop at ``offset`` of a grid of ``shape``, or the whole
        grid when they are None), cut to its bounding box."""
        offset = offset or (0,) * mask.ndim
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        return cls(name, id, label, np.ascontiguousarray(mask[box]), area,
                   tuple(o + b.start for o, b in zip(offset, box)), tuple(shape or mask.shape))


@dataclass
class Case:
    """A loaded case: image + label map (same grid) + modality + targets."""

    dataset: str
    case_id: str
    image: MedicalImage
    labels: MedicalImage
    modality: str
    targets: list[Target]
    guide_paths: tuple[Path, ...] = ()
    #: other channels of the image's own file (a Decathlon 4D case): ``(path, channel)``
    guide_channels: tuple[tuple[Path, int], ...] = ()

    def read_guides(self) -> list[MedicalImage]:
        """The case's other channels (nnU-Net ``_000C`` files beside the one read, or the other
        volumes of a Decathlon 4D file), for the 3D click walker (``VolumeSession(guides=...)``,
        which checks that they lie on the image's grid)."""
        return ([read_image(p, modality=self.image.modality) for p in self.guide_paths]
                + [read_image(p, modality=self.image.modality, channel=c) for p, c in self.guide_channels])


@dataclass(frozen=True)
class CaseRef:
    """A case found on disk but not yet read; :meth:`load` reads and checks it."""

    dataset: str
    case_id: str
    image_path: Path
    label_path: Path | None
    options: DatasetOptions
    npz: bool = False
    guide_paths: tuple[Path, ...] = ()
    single_file: bool = False  # a Decathlon case: all its channels in one (4D) file

    def load(self) -> Case:
        """Read image and labels and extract targets; InputError on any problem."""
        opts = self.options
        modality = opts.modality or "OT"
        read_modality = modality if modality in KNOWN_MODALITIES else "OT"
        channel, guide_channels = opts.channel, ()
        header = read_header(self.image_path) if self.single_file else None
        if header is not None and header.is_volume:
            n = header.channels
            if n > 1:  # a 4D Decathlon case: read channel 0 unless told; the others guide the 3D clicks
                channel = channel or 0
                if opts.guides is not False:
                    guide_channels = tuple((self.image_path, c) for c in range(n) if c != channel)
        image = read_image(self.image_path, modality=read_modality, channel=channel)
        if self.npz:
            gts = image.source.get("gts")
            if gts is None:
                raise InputError(f"{self.image_path}: npz has no 'gts' array")
            labels = image.as_labels(_as_label_array(np.asarray(gts), self.image_path))
        else:
            if self.label_path is None or not self.label_path.exists():
                raise InputError(f"{self.image_path.name}: no mask file for case {self.case_id!r}")
            arr = _as_label_array(read_label_map(self.label_path), self.label_path)
            if arr.shape != image.spatial_shape:
                raise InputError(f"case {self.case_id}: mask shape {arr.shape} does not match image "
                                 f"{image.spatial_shape}")
            labels = image.as_labels(arr)
        targets = extract_targets(labels.array, opts)
        if not targets:
            raise InputError(f"case {self.case_id}: mask has no target of >= {opts.min_area or 1} pixels")
        return Case(self.dataset, self.case_id, image, labels, modality, targets, self.guide_paths, guide_channels)


def _as_label_array(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{path}: mask is not an integer label map")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "ui":
        raise InputError(f"{path}: mask has unsupported type {arr.dtype}")
    if arr.min(initial=0) < 0:
        raise InputError(f"{path}: mask has negative label values")
    return arr


def extract_targets(labels: np.ndarray, opts: DatasetOptions = DatasetOptions()) -> list[Target]:
    """Targets of a label map according to ``opts.targets`` (default ``label``).

    Components use full connectivity (8 in 2D, 26 in 3D). Targets under ``min_area``
    (default 1) are dropped; ``max_targets`` keeps the largest (ties: lower id first).
    """
    mode = opts.targets or "label"
    min_area = max(1, opts.min_area or 1)
    names = opts.labels or {}
    values, counts = np.unique(labels, return_counts=True)
    boxes = label_slices(labels)
    out: list[Target] = []
    for value, count in zip(values.tolist(), counts.tolist()):
        if value == 0 or count < min_area:
            continue
        box = boxes[value]
        mask = labels[box] == value  # within the label's box only: no whole-grid mask per object
        offset = tuple(b.start for b in box)
        name = (opts.target_name or "instance") if mode == "instance" else names.get(value, f"label{value}")
        if mode in ("instance", "label"):
            out.append(Target.from_crop(name, str(value), value, mask, count, offset, labels.shape))
        else:
            comps, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
            areas = np.bincount(comps.ravel())
            for c in range(1, n + 1):
                if areas[c] >= min_area:
                    out.append(Target.from_crop(name, f"{value}.c{c}", value, comps == c, int(areas[c]), offset,
                                         labels.shape))
    if opts.max_targets is not None and len(out) > opts.max_targets:
        order = sorted(range(len(out)), key=lambda i: -out[i].area)[: opts.max_targets]
        out = [out[i] for i in sorted(order)]
    return out


# ------------------------------------------------------------------ discovery
def _stem(path: Path) -> str:
    name = path.name
    for ext in IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and any(p.name.lower().endswith(e) for e in IMAGE_EXTS))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _options_from_files(root: Path, channel: int | None = None) -> DatasetOptions:
    """Settings from dataset.json (the modality of ``channel``: the one given, else medisam.json's,
    else 0), labels.json and medisam.json (later ones win)."""
    opts = DatasetOptions()
    sidecar = DatasetOptions.from_dict(_read_json(root / "medisam.json")) if (root / "medisam.json").is_file() else None
    if channel is None:
        channel = (sidecar.channel if sidecar is not None else None) or 0
    if (root / "dataset.json").is_file():
        dj = _read_json(root / "dataset.json")
        mods = dj.get("modality") or dj.get("channel_names") or {}
        mod = mods.get(str(channel)) if isinstance(mods, dict) else None
        labels_raw = dj.get("labels") or {}
        labels: dict[int, str] = {}
        for k, v in labels_raw.items():  # MSD: {"1": "liver"}; nnU-Net v2: {"liver": 1}
            if str(k).lstrip("-").isdigit():
                labels[int(k)] = str(v)
            elif isinstance(v, int):
                labels[v] = str(k)
        labels.pop(0, None)
        opts = opts.merged(DatasetOptions(modality=normalise_modality(mod), labels=labels or None))
    if (root / "labels.json").is_file():
        lj = _read_json(root / "labels.json")
        opts = opts.merged(DatasetOptions(labels={int(k): str(v) for k, v in lj.items()
                                                  if str(k).isdigit() and int(k) != 0}))
    if sidecar is not None:
        opts = opts.merged(replace(sidecar, modality=normalise_modality(sidecar.modality)))
    return opts


def detect_layout(root: Path) -> str:
    """``"folder2d"``, ``"nnunet"`` or ``"npz"``; InputError when none fits."""
    if root.is_file() and root.name.lower().endswith(".npz"):
        return "npz"
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        return "nnunet"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder2d"
    if any(p.suffix.lower() == ".npz" for p in root.iterdir()):
        return "npz"
    raise InputError(f"{root}: not a dataset folder (expected images/+masks/, imagesTr/+labelsTr/ or *.npz files)")


def discover_cases(path: str | Path, options: DatasetOptions | None = None,
                   name: str | None = None) -> list[CaseRef]:
    """List the cases of a dataset folder, sorted by case id (nothing is read yet)."""
    root = Path(path).expanduser()
    layout = detect_layout(root)
    dataset = name or (root.stem if root.is_file() else root.name)
    base = _options_from_files(root if root.is_dir() else root.parent, options.channel if options else None)
    opts = base.merged(options or DatasetOptions())
    opts = replace(opts, modality=normalise_modality(opts.modality))
    refs: list[CaseRef] = []
    if layout == "folder2d":
        masks = {_stem(p): p for p in _files(root / "masks")}
        for img in _files(root / "images"):
            stem = _stem(img)
            refs.append(CaseRef(dataset, stem, img, masks.get(stem, root / "masks" / f"{stem}.png"), opts))
    elif layout == "nnunet":
        channel = opts.channel or 0
        suffix = re.compile(rf"^(.*)_{channel:04d}$")
        labels = {_stem(p): p for p in _files(root / "labelsTr")}
        images = _files(root / "imagesTr")
        channels: dict[str, list[Path]] = {}  # case -> its channel files (the walker's guides)
        for img in images:
            m = re.fullmatch(r"(.*)_\d{4}", _stem(img))
            if m:
                channels.setdefault(m[1], []).append(img)
        for img in images:
            stem = _stem(img)
            m = suffix.match(stem)
            if m and (m[1] in labels or stem not in labels):
                case = m[1]
                others = tuple(p for p in channels[case] if p != img) if opts.guides is not False else ()
                refs.append(CaseRef(dataset, case, img, labels.get(case, root / "labelsTr" / f"{case}.nii.gz"),
                                    replace(opts, channel=None), guide_paths=others))
            elif stem in labels or not re.fullmatch(r"(.*)_\d{4}", stem):
                # the Decathlon's own layout: <case>.nii.gz, its modalities as the volumes of one 4D file
                refs.append(CaseRef(dataset, stem, img, labels.get(stem, root / "labelsTr" / f"{stem}.nii.gz"),
                                    opts, single_file=True))
    else:
        files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() == ".npz")
        refs = [CaseRef(dataset, f.stem, f, None, _npz_options(f, opts), npz=True) for f in files]
    if not refs:
        raise InputError(f"{root}: dataset has no images")
    return sorted(refs, key=lambda r: r.case_id)


def _npz_options(path: Path, opts: DatasetOptions) -> DatasetOptions:
    """``opts`` with the modality a CVPR challenge file is named after (``CT_AbdTumor_001.npz``,
    ``MR_...``, ``PET_...``, ``Microscopy_...``) when no setting gives one."""
    if opts.modality is not None:
        return opts
    prefix = normalise_modality(path.stem.split("_", 1)[0])
    return replace(opts, modality=prefix) if prefix in KNOWN_MODALITIES and "_" in path.stem else opts


def iter_cases(path: str | Path, options: DatasetOptions | None = None, *, max_cases: int | None = None,
               skip_errors: bool = True) -> Iterator[Case]:
    """Load the cases of a dataset one by one (first ``max_cases`` by case id).

    With ``skip_errors`` a bad case is logged and skipped; otherwise its InputError is raised.
    """
    refs = discover_cases(path, options)
    for ref in refs[:max_cases]:
        try:
            yield ref.load()
        except MedisamError as exc:
            if not skip_errors:
                raise
            log.warning("skipping case %s/%s: %s", ref.dataset, ref.case_id, exc)

