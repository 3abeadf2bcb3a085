"""What a DICOM-SEG segment *is*: label name, SNOMED CT category and type codes, display colour.

Names resolve in this order (case, spaces, ``_`` and ``-`` ignored):

1. the table :data:`KNOWN` below: common organs and lesions with the category and type codes
   3D Slicer's terminology (and so dcmqi) writes, e.g. liver = category
   ``SCT 123037004 "Anatomical Structure"``, type ``SCT 10200004 "Liver"``, and Slicer's
   recommended colour;
2. any SNOMED CT concept in pydicom's code dictionary (``codes.SCT``, ~11 000 concepts;
   ``"hippocampal structure"`` -> ``codes.SCT.HippocampalStructure``): that type code, category
   "Anatomical Structure", a colour from a fixed palette;
3. anything else is an error naming the close matches. There is no silent free-text
   fallback: a segment coded "Tissue" by mistake is worse than a typo caught at once. A
   label with no name at all stays ``"label N"`` with generic "Tissue" codes, as before.

A labels JSON (``--labels``) maps label value -> name, or -> an object with ``name`` and
optional ``category``, ``type`` (a name as above, ``"SCT:10200004:Liver"``, or
``{"scheme": ..., "value": ..., "meaning": ...}``) and ``color`` (``[r, g, b]`` 0..255 or
``"#rrggbb"``); explicit codes make any free-text name possible.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from medisam.errors import InputError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class CodeTriple:
    """A coded concept: coding scheme, code value, code meaning (DICOM's triplet)."""

    scheme: str
    value: str
    meaning: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}:{self.meaning}"


@dataclass(frozen=True)
class SegmentMeaning:
    """Label name, category and type codes and recommended RGB colour of one segment."""

    name: str
    category: CodeTriple
    type: CodeTriple
    color: RGB

    def slicer_terminology(self) -> str:
        """3D Slicer's terminology-entry string (what Slicer's DICOM-SEG export turns into codes)."""
        def code(c: CodeTriple) -> str:
            return f"{c.scheme}^{c.value}^{c.meaning}"

        return (f"Segmentation category and type - DICOM master list~{code(self.category)}~{code(self.type)}"
                "~^^~Anatomic codes - DICOM master list~^^~^^")


ANATOMY = CodeTriple("SCT", "123037004", "Anatomical Structure")
ALTERED = CodeTriple("SCT", "49755003", "Morphologically Altered Structure")
TISSUE = CodeTriple("SCT", "85756007", "Tissue")

#: name -> (category, pydicom ``codes.SCT`` keyword of the type, Slicer's recommended RGB).
KNOWN: dict[str, tuple[CodeTriple, str, RGB]] = {
    "liver": (ANATOMY, "Liver", (221, 130, 101)),
    "spleen": (ANATOMY, "Spleen", (157, 108, 162)),
    "kidney": (ANATOMY, "Kidney", (185, 102, 83)),
    "pancreas": (ANATOMY, "Pancreas", (249, 180, 111)),
    "stomach": (ANATOMY, "Stomach", (216, 132, 105)),
    "gallbladder": (ANATOMY, "Gallbladder", (139, 150, 98)),
    "heart": (ANATOMY, "Heart", (206, 110, 84)),
    "lung": (ANATOMY, "Lung", (197, 165, 145)),
    "aorta": (ANATOMY, "Aorta", (224, 97, 76)),
    "inferior vena cava": (ANATOMY, "InferiorVenaCava", (0, 151, 206)),
    "portal vein": (ANATOMY, "PortalVein", (0, 151, 206)),
    "esophagus": (ANATOMY, "Esophagus", (211, 171, 143)),
    "duodenum": (ANATOMY, "Duodenum", (255, 253, 229)),
    "small intestine": (ANATOMY, "SmallIntestine", (205, 167, 142)),
    "colon": (ANATOMY, "Colon", (204, 168, 143)),
    "rectum": (ANATOMY, "Rectum", (204, 168, 143)),
    "bladder": (ANATOMY, "Bladder", (222, 154, 132)),
    "prostate": (ANATOMY, "Prostate", (230, 158, 140)),
    "uterus": (ANATOMY, "Uterus", (244, 214, 49)),
    "adrenal gland": (ANATOMY, "AdrenalGland", (249, 186, 150)),
    "trachea": (ANATOMY, "Trachea", (182, 228, 255)),
    "brain": (ANATOMY, "Brain", (250, 250, 225)),
    "brain stem": (ANATOMY, "BrainStem", (119, 159, 176)),
    "cerebellum": (ANATOMY, "Cerebellum", (220, 248, 164)),
    "hippocampus": (ANATOMY, "Hippocampus", (220, 216, 20)),
    "thalamus": (ANATOMY, "Thalamus", (0, 118, 14)),
    "amygdala": (ANATOMY, "Amygdala", (103, 255, 255)),
    "spinal cord": (ANATOMY, "SpinalCord", (244, 214, 49)),
    "left ventricle": (ANATOMY, "LeftVentricle", (240, 71, 73)),
    "right ventricle": (ANATOMY, "RightVentricle", (181, 85, 57)),
    "left atrium": (ANATOMY, "LeftAtrium", (204, 142, 178)),
    "bone": (ANATOMY, "Bone", (241, 214, 145)),
    "vertebra": (ANATOMY, "Vertebra", (241, 214, 145)),
    "femur": (ANATOMY, "Femur", (241, 214, 145)),
    "skull": (ANATOMY, "Skull", (241, 214, 145)),
    "muscle": (ANATOMY, "Muscle", (192, 104, 88)),
    "breast": (ANATOMY, "Breast", (255, 224, 189)),
    "eye": (ANATOMY, "Eye", (194, 142, 0)),
    "artery": (ANATOMY, "Artery", (216, 101, 79)),
    "vein": (ANATOMY, "Vein", (0, 151, 206)),
    "cerebrospinal fluid": (ANATOMY, "CerebrospinalFluid", (85, 188, 255)),
    "tumor": (ALTERED, "Neoplasm", (144, 238, 144)),
    "tumour": (ALTERED, "Neoplasm", (144, 238, 144)),
    "neoplasm": (ALTERED, "Neoplasm", (144, 238, 144)),
    "oedema": (ALTERED, "Edema", (139, 150, 98)),
    "mass": (ALTERED, "Mass", (144, 238, 144)),
    "lesion": (ALTERED, "Lesion", (255, 255, 0)),
    "nodule": (ALTERED, "Nodule", (255, 170, 0)),
    "cyst": (ALTERED, "Cyst", (205, 205, 100)),
    "edema": (ALTERED, "Edema", (139, 150, 98)),
    "enhancing tumor": (ALTERED, "Neoplasm", (255, 0, 0)),
    "enhancing tumour": (ALTERED, "Neoplasm", (255, 0, 0)),
    "necrosis": (ALTERED, "Necrosis", (216, 191, 216)),
    "hemorrhage": (ALTERED, "Hemorrhage", (188, 65, 28)),
    "hematoma": (ALTERED, "Hematoma", (188, 65, 28)),
}

#: Colours for labels without a known colour: the overlay PNG's first ten (medisam.io.overlay.PALETTE,
#: not imported so that the Slicer module needs no OpenCV).
PALETTE: tuple[RGB, ...] = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def palette_color(value: int) -> RGB:
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def generic(value: int) -> SegmentMeaning:
    """An unnamed label: ``"label N"``, generic Tissue codes, a palette colour."""
    return SegmentMeaning(f"label {value}", TISSUE, TISSUE, palette_color(value))


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@lru_cache(maxsize=1)
def _sct_keywords() -> dict[str, str]:
    """Normalised name -> pydicom ``codes.SCT`` keyword, for all SNOMED CT concepts pydicom carries."""
    from pydicom.sr.codedict import codes

    return {_key(k): k for k in codes.SCT.dir()}


@lru_cache(maxsize=1)
def _known_keys() -> dict[str, str]:
    return {_key(k): k for k in KNOWN}


def _sct(keyword: str) -> CodeTriple:
    from pydicom.sr.codedict import codes

    c = getattr(codes.SCT, keyword)
    return CodeTriple(str(c.scheme_designator), str(c.value), str(c.meaning))


def close_matches(name: str, n: int = 5) -> list[str]:
    """Known names and SNOMED CT keywords that look like ``name`` (for error messages)."""
    key = _key(name)
    known = _known_keys()
    sct = _sct_keywords()
    hits = difflib.get_close_matches(key, list(known), n=n, cutoff=0.6)
    hits += [k for k in difflib.get_close_matches(key, list(sct), n=n, cutoff=0.75) if k not in known]
    return [known.get(h) or sct[h] for h in hits[:n]]


def lookup(name: str, value: int = 1) -> SegmentMeaning:
    """The meaning of a segment called ``name`` (label ``value`` picks the fallback colour).

    Raises:
        InputError: ``name`` is neither in :data:`KNOWN` nor a SNOMED CT concept in pydicom;
            the message lists close matches.
    """
    label = name.strip()
    if not label:
        raise InputError("segment name is empty")
    key = _key(label)
    if key in _known_keys():
        category, keyword, rgb = KNOWN[_known_keys()[key]]
        return SegmentMeaning(label, category, _sct(keyword), rgb)
    keyword = _sct_keywords().get(key)
    if keyword is not None:
        return SegmentMeaning(label, ANATOMY, _sct(keyword), palette_color(value))
    near = close_matches(label)
    hint = f"; close matches: {', '.join(near)}" if near else ""
    raise InputError(f"unknown segment name {name!r}: not a known structure or SNOMED CT concept{hint}; "
                     "give its codes in a labels JSON (see docs/dicom_seg.md) to use a free-text name")


#: The longest text DICOM holds in each field (its value representations: LO 64, SH 16 characters).
NAME_CHARS, MEANING_CHARS, SCHEME_CHARS, VALUE_CHARS = 64, 64, 16, 64


def dicom_text(text: str, what: str, limit: int) -> str:
    r"""``text`` stripped, if a DICOM text field can hold it: not empty, at most ``limit``
    characters, no backslash (DICOM's value separator: ``x\y`` became two labels) and no
    control characters; else an InputError (the writer truncated or mangled it silently)."""
    text = text.strip()
    if not text:
        raise InputError(f"{what} is empty")
    if len(text) > limit:
        raise InputError(f"{what} has {len(text)} characters; DICOM holds at most {limit}")
    bad = next((c for c in text if c == "\\" or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise InputError(f"{what} contains {bad!r}, which DICOM cannot hold in a text field")
    return text


def _code(scheme: Any, value: Any, meaning: Any, what: str) -> CodeTriple:
    return CodeTriple(dicom_text(str(scheme), f"{what}: the coding scheme", SCHEME_CHARS),
                      dicom_text(str(value), f"{what}: the code value", VALUE_CHARS),
                      dicom_text(str(meaning), f"{what}: the code meaning", MEANING_CHARS))


def parse_code(spec: Any, what: str) -> CodeTriple:
    """A code from a name (``"Liver"``), ``"SCT:10200004:Liver"`` or ``{"scheme","value","meaning"}``."""
    if isinstance(spec, Mapping):
        try:
            return _code(spec["scheme"], spec["value"], spec["meaning"], what)
        except KeyError as exc:
            raise InputError(f"{what}: a code object needs scheme, value and meaning; missing {exc}") from None
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{what}: expected a code name, 'SCHEME:VALUE:MEANING' or an object, got {spec!r}")
    parts = spec.split(":", 2)
    if len(parts) == 3 and all(p.strip() for p in parts):
        return _code(*parts, what)
    key = _key(spec)
    for code in (ANATOMY, ALTERED, TISSUE):
        if key == _key(code.meaning):
            return code
    return lookup(spec).type


def parse_color(spec: Any, what: str) -> RGB:
    """``[r, g, b]`` (0..255) or ``"#rrggbb"`` -> RGB."""
    if isinstance(spec, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", spec.strip()):
        h = spec.strip()
        return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)
    if (isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in spec)):
        return int(spec[0]), int(spec[1]), int(spec[2])
    raise InputError(f"{what}: color must be [r, g, b] with integers 0..255 or '#rrggbb', got {spec!r}")


Spec = Union[str, Mapping[str, Any], SegmentMeaning]


def meaning(value: int, spec: Spec) -> SegmentMeaning:
    """One label's meaning from a name, a labels-JSON object or a ready :class:`SegmentMeaning`."""
    if isinstance(spec, SegmentMeaning):
        return spec
    if isinstance(spec, str):
        return lookup(spec, value)
    if not isinstance(spec, Mapping):
        raise InputError(f"label {value}: expected a name or an object, got {type(spec).__name__}")
    unknown = set(spec) - {"name", "category", "type", "color"}
    if unknown:
        raise InputError(f"label {value}: unknown key(s) {', '.join(sorted(unknown))}; "
                         "use name, category, type, color")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"label {value}: 'name' (a non-empty string) is required")
    if "type" in spec:  # explicit codes: the name is free text
        base = SegmentMeaning(dicom_text(name, f"label {value}: the name", NAME_CHARS), ANATOMY,
                              parse_code(spec["type"], f"label {value} type"),
                              palette_color(value))
    else:
        base = lookup(name, value)
    category = parse_code(spec["category"], f"label {value} category") if "category" in spec else base.category
    color = parse_color(spec["color"], f"label {value}") if "color" in spec else base.color
    return SegmentMeaning(base.name, category, base.type, color)


def _label_value(text: Any, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise InputError(f"{what}: label value {text!r} is not an integer") from None
    if not 1 <= value <= 65535:
        raise InputError(f"{what}: label value must be 1..65535, got {value}")
    return value


def resolve(specs: Mapping[Any, Spec] | None) -> dict[int, SegmentMeaning]:
    """Label value -> meaning for every entry (keys may be ints or digit strings)."""
    return {_label_value(k, "labels"): meaning(_label_value(k, "labels"), v) for k, v in (specs or {}).items()}


def parse_label_names(items: Sequence[str], first_label: int = 1) -> dict[int, SegmentMeaning]:
    """``--label-name`` values: ``V=name`` names label V; a bare name takes the next label from ``first_label``.

    (``segment``: the i-th ``--box`` is label i; ``propagate``: the object is ``--label``.)
    """
    out: dict[int, SegmentMeaning] = {}
    nxt = first_label
    for item in items:
        head, sep, tail = item.partition("=")
        if sep and head.strip().isdigit():
            value, name = _label_value(head, "--label-name"), tail
        else:
            value, name = nxt, item
            nxt += 1
        if value in out:
            raise InputError(f"--label-name: label {value} is named twice")
        out[value] = lookup(name, value)
    return out


def parse_labels(text: str, what: str = "labels") -> dict[int, SegmentMeaning]:
    """Labels JSON text (see :func:`load_labels_json`) -> label value -> meaning."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what}: not valid JSON ({exc})") from None
    except RecursionError:  # "[[[[..." 5000 deep fits in a URL or an option
        raise InputError(f"{what}: the JSON is nested too deeply; give an object such as "
                         '{"1": "liver"}') from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a JSON object mapping label value -> name or object")
    try:
        return resolve(data)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None


def load_labels_json(path: Path) -> dict[int, SegmentMeaning]:
    """A labels JSON file: ``{"1": "liver", "2": {"name": "tumour", "type": "Neoplasm", "color": "#90ee90"}}``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--labels {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--labels {path}: not a readable JSON file ({type(exc).__name__}: {exc})") from None
    return parse_labels(text, f"--labels {path}")


def from_options(names: Sequence[str], labels_json: Path | None, first_label: int = 1) -> dict[int, SegmentMeaning]:
    """The CLI's ``--labels FILE`` and ``--label-name`` together (a name given on the command line wins)."""
    out = load_labels_json(labels_json) if labels_json is not None else {}
    out.update(parse_label_names(names, first_label))
    return out
