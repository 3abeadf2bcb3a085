"""Segment names -> SNOMED CT codes and colours (medisam.io.segment_meaning)."""

from __future__ import annotations

import json

import pytest

from medisam.errors import InputError
from medisam.io import segment_meaning as sm


def test_known_name_has_slicer_codes_and_colour():
    m = sm.lookup("Liver")
    assert m.name == "Liver"
    assert (m.category.value, m.type.scheme, m.type.value, m.type.meaning) == ("123037004", "SCT", "10200004", "Liver")
    assert m.color == (221, 130, 101)
    assert "SCT^10200004^Liver" in m.slicer_terminology()
    assert sm.lookup("small_intestine").type.value == "30315005"  # spaces, _ and - are ignored


def test_snomed_fallback_and_unknown_name():
    m = sm.lookup("Hippocampal structure", value=3)
    assert m.type.value == "5366008" and m.category == sm.ANATOMY and m.color == sm.palette_color(3)
    with pytest.raises(InputError, match=r"unknown segment name 'spleeen'.*close matches: spleen"):
        sm.lookup("spleeen")
    with pytest.raises(InputError, match="empty"):
        sm.lookup("  ")


def test_label_names_bare_and_numbered():
    out = sm.parse_label_names(["liver", "3=spleen", "kidney"], first_label=1)
    assert {v: m.type.meaning for v, m in out.items()} == {1: "Liver", 3: "Spleen", 2: "Kidney"}
    assert list(sm.parse_label_names(["tumor"], first_label=7)) == [7]
    with pytest.raises(InputError, match="named twice"):
        sm.parse_label_names(["liver", "1=spleen"])
    with pytest.raises(InputError, match="1..65535"):
        sm.parse_label_names(["0=liver"])


def test_labels_json(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({
        "1": "liver",
        "2": {"name": "lesion A", "category": "Morphologically Altered Structure", "type": "Neoplasm",
              "color": [1, 2, 3]},
        "5": {"name": "reference", "type": {"scheme": "NCIt", "value": "C94970", "meaning": "Reference Region"}},
    }))
    out = sm.load_labels_json(path)
    assert out[1].type.value == "10200004"
    assert (out[2].name, out[2].category, out[2].type.value, out[2].color) == \
        ("lesion A", sm.ALTERED, "108369006", (1, 2, 3))
    assert (out[5].type.scheme, out[5].type.value, out[5].color) == ("NCIt", "C94970", sm.palette_color(5))
    merged = sm.from_options(["1=spleen"], path)  # the command line wins over the file
    assert merged[1].type.meaning == "Spleen" and set(merged) == {1, 2, 5}


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "expected a JSON object"),
    ("{", "not valid JSON"),
    ('{"x": "liver"}', "not an integer"),
    ('{"1": {"type": "Liver"}}', "'name'"),
    ('{"1": {"name": "a", "colour": "#ffffff"}}', "unknown key"),
    ('{"1": {"name": "liver", "color": [300, 0, 0]}}', "0..255"),
    ('{"1": {"name": "x", "type": {"scheme": "SCT"}}}', "needs scheme, value and meaning"),
    # what DICOM cannot hold: written truncated, split at the backslash or with the NUL (stop 69)
    ('{"1": {"name": "x", "type": {"scheme": "SCT", "value": "1", "meaning": "%s"}}}' % ("m" * 65),
     "code meaning has 65 characters; DICOM holds at most 64"),
    ('{"1": {"name": "x\\\\y", "type": "SCT:1:Liver"}}', "the name contains '\\\\\\\\'"),
    ('{"1": {"name": "a\\u0000b", "type": "SCT:1:Liver"}}', "contains '\\\\x00'"),
    ('{"1": {"name": "x", "type": {"scheme": "", "value": "", "meaning": ""}}}', "coding scheme is empty"),
    ('{"1": {"name": "x", "type": "SCT:1:Liver", "category": "VERYLONGSCHEMENAME:1:a"}}', "at most 16"),
])
def test_labels_json_errors(tmp_path, content, match):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        sm.load_labels_json(path)
    with pytest.raises(InputError, match="no such file"):
        sm.load_labels_json(tmp_path / "missing.json")
