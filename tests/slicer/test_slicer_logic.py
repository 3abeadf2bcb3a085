"""The 3D Slicer module's logic, headless, against Slicer's real MRML core (PyPI slicer-core) and a live server:
ROI -> 3D box, markups line -> RECIST, markups points -> 3D corrective clicks."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
if not hasattr(slicer, "vtkMRMLScene"):  # another PyPI package is also called "slicer"
    pytest.skip("slicer-core (3D Slicer MRML) is not installed", allow_module_level=True)
pytest.importorskip("fastapi")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "slicer" / "MedisamSegment"))
from MedisamSegmentLib.logic import (  # noqa: E402
    EmptySegmentationError,
    MedisamSegmentCore,
    geometry_from_ijk_to_ras,
)

TOKEN = "slicer-test-token"

# An oblique, flipped IJK-to-RAS: i runs to the left (-R), j posterior-ish with a tilt, k superior.
_ROT = np.array([[0.0, -1.0, 0.0], [np.cos(0.3), 0.0, np.sin(0.3)], [-np.sin(0.3), 0.0, np.cos(0.3)]]).T
IJK_TO_RAS = np.eye(4)
IJK_TO_RAS[:3, :3] = _ROT @ np.diag([0.8, 0.7, 2.5])
IJK_TO_RAS[:3, 3] = [30.0, -12.0, 40.0]


@pytest.fixture()
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    for name in dir(slicer):
        if name.startswith("vtk") and name.endswith("ConversionRule"):
            factory.RegisterConverterRule(getattr(slicer, name)())
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(1)


def _live(model):
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.background import BackgroundServer

    return BackgroundServer(create_app(ServerSettings(token=TOKEN), model=model))


@pytest.fixture(scope="module")
def tiny_url(tiny_model):
    with _live(tiny_model) as url:
        yield url


def _ball_volume(shape=(9, 64, 64), center=(4, 30, 34), radii=(3.0, 14.0, 12.0)) -> np.ndarray:
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ball = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), center, radii)) <= 1
    return np.where(ball, 80, -800).astype(np.int16)


def _roi(center_ras, size_mm):
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenter(*center_ras)
    roi.SetSize(*size_mm)
    return roi


def _segment_array(seg, segment_id: str, vol) -> np.ndarray:
    """A segment exported on the volume's grid, (k, j, i) (slicer.util's version needs slicer.modules)."""
    import vtk

    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    try:
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg, ids, labelmap, vol)
        return slicer.util.arrayFromVolume(labelmap).copy()
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)


def _ras_of(ijk) -> np.ndarray:
    return (IJK_TO_RAS @ np.r_[np.asarray(ijk, float), 1.0])[:3]


def test_ras_to_lps_geometry_matches_what_the_server_reads(scene, tiny_url):
    from medisam.client import Client

    spacing, origin, direction = geometry_from_ijk_to_ras(IJK_TO_RAS)
    assert spacing == pytest.approx((0.8, 0.7, 2.5))
    d = np.array(direction).reshape(3, 3)
    ijk = np.array([5.0, 7.0, 2.0])
    lps = np.array(origin) + d @ (np.array(spacing) * ijk)  # ITK's index -> physical point
    assert np.allclose(lps * [-1, -1, 1], _ras_of(ijk))  # the same point in RAS
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    with Client(tiny_url, token=TOKEN) as c, c.open_session(slicer.util.arrayFromVolume(vol), spacing=spacing,
                                                           origin=origin, direction=direction) as s:
        assert s.info["spacing"] == pytest.approx(spacing, abs=1e-6)
        assert s.info["origin"] == pytest.approx(origin, abs=1e-6)
        assert s.info["direction"] == pytest.approx(direction, abs=1e-6)


def test_roi_maps_to_slice_and_box_through_the_oblique_matrix(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    # an ROI built from voxel corners (i 10..20, j 5..25, k 3..5) in RAS
    lo, hi = _ras_of([10, 5, 3]), _ras_of([20, 25, 5])
    roi = _roi((lo + hi) / 2, np.abs(hi - lo))
    k, box, k_range = MedisamSegmentCore.roi_to_slice_box(vol, roi)
    # the RAS bounding box of an oblique ROI is larger than the voxel box: it must contain it
    assert k_range[0] <= 3 and k_range[1] >= 5 and k_range[0] <= k <= k_range[1]
    assert box[0] <= 10 and box[1] <= 5 and box[2] >= 21 and box[3] >= 26
    fid = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    fid.AddControlPoint(*_ras_of([12.0, 9.0, 4.0]))
    assert MedisamSegmentCore.markups_to_points(vol, fid, 1) == [(4, pytest.approx(12.0), pytest.approx(9.0), 1)]


def test_segment_writes_a_segment_on_the_volume_grid(scene, tiny_url):
    from medisam.client import Client

    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    roi = _roi((lo + hi) / 2, np.abs(hi - lo))
    logic = MedisamSegmentCore(Client(tiny_url, token=TOKEN))
    try:
        result = logic.segment(vol, seg, roi, propagate=True)
    except EmptySegmentationError:
        pytest.skip("the tiny random model gave an empty mask for this ROI")
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0  # temp node removed
    written = _segment_array(seg, result.segment_id, vol)
    assert written.shape == (9, 64, 64)
    assert int((written > 0).sum()) == result.voxels
    assert seg.GetSegmentation().GetSegment(result.segment_id).GetName() == "medisam"


class _EmptySession:
    info: dict = {}
    last_found_box = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __init__(self, shape):
        self.shape = shape

    def predict(self, **kw):
        return np.zeros(self.shape[1:], bool)

    def add_points(self, **kw):
        return np.zeros(self.shape[1:], bool)

    def add_box3d(self, **kw):
        return np.zeros(self.shape[1:], bool)

    def propagate(self):
        return {}

    def labels(self):
        return np.zeros(self.shape, np.uint8)


class _EmptyClient:
    """Stands in for a server that answers with an empty mask."""

    def open_session(self, array, **kw):
        return _EmptySession(array.shape)


def test_empty_answer_raises_and_writes_nothing(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    with pytest.raises(EmptySegmentationError, match="empty mask"):
        MedisamSegmentCore(_EmptyClient()).segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)))
    assert seg.GetSegmentation().GetNumberOfSegments() == 0


def test_needs_a_prompt(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(ValueError, match="a positive scribble or at least one positive point"):
        MedisamSegmentCore(_EmptyClient()).segment(vol, seg)


@pytest.mark.real_weights
def test_real_model_finds_the_ball_where_it_is_in_ras(scene, real_model):
    """Real LiteMedSAM: the segment lies on the ball, in RAS, through the oblique geometry."""
    from medisam.client import Client

    center = (4, 30, 34)
    array = _ball_volume(center=center)
    vol = slicer.util.addVolumeFromArray(array, IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([34 - 15, 30 - 17, 2]), _ras_of([34 + 15, 30 + 17, 6])
    with _live(real_model) as url:
        result = MedisamSegmentCore(Client(url, token=TOKEN)).segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)))
    written = _segment_array(seg, result.segment_id, vol).astype(bool)
    truth = array > 0
    mid = written[center[0]]
    dice = 2 * (mid & truth[center[0]]).sum() / (mid.sum() + truth[center[0]].sum())
    assert dice > 0.8
    kji = np.argwhere(written).mean(axis=0)
    assert np.linalg.norm(_ras_of(kji[::-1]) - _ras_of(center[::-1])) < 2.0  # mm


@pytest.mark.real_weights
def test_a_positive_point_alone_finds_the_ball_and_says_the_box(scene, real_model):
    """One positive point, no ROI (the issue trackers' "point prompts that work"): real LiteMedSAM answers
    it with a box found around it; the segment is the ball and the status names that box."""
    from medisam.client import Client

    center = (4, 30, 34)
    array = _ball_volume(center=center)
    vol = slicer.util.addVolumeFromArray(array, IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with _live(real_model) as url:
        result = MedisamSegmentCore(Client(url, token=TOKEN)).segment(vol, seg, positive_node=_points([34, 30, 4]))
    written = _segment_array(seg, result.segment_id, vol).astype(bool)
    truth = array > 0
    assert 2 * (written & truth).sum() / (written.sum() + truth.sum()) > 0.7
    said = re.match(r"the points on slice 4 were answered with the box i (\d+)\.\.(\d+), j (\d+)\.\.(\d+) ",
                    result.notices[0])
    assert said is not None, result.notices
    i0, i1, j0, j1 = (float(v) for v in said.groups())
    assert i0 <= 34 - 12 + 2 and i1 >= 34 + 12 - 2 and j0 <= 30 - 14 + 2 and j1 >= 30 + 14 - 2  # around the ball


class _RecordingSession(_EmptySession):
    """Records the calls; answers a filled block inside the ROI's slices."""

    def __init__(self, shape, calls):
        super().__init__(shape)
        self.calls = calls

    def add_box3d(self, **kw):
        self.calls.append(("add_box3d", kw))
        return np.ones(self.shape[1:], bool)

    def predict(self, **kw):
        self.calls.append(("predict", kw))
        return super().predict(**kw)

    def add_scribble(self, **kw):
        self.calls.append(("add_scribble", kw))
        return np.ones(self.shape[1:], bool)

    def propagate(self):
        self.calls.append(("propagate", {}))
        return {"plan": ["object 1: 3D box plan: 1 view(s) [k: 5] = 5 encodings vs 5 along one axis"],
                "notices": ["object 1: the j view is left out of the vote"]}

    def labels(self):
        out = np.zeros(self.shape, np.uint8)
        out[:, 20:30, 20:30] = 1
        return out


class _RecordingClient:
    def __init__(self):
        self.calls = []

    def open_session(self, array, **kw):
        self.calls.append(("open_session", kw))
        return _RecordingSession(array.shape, self.calls)


def test_roi_goes_as_a_3d_box_with_modality_and_window(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    roi = _roi((lo + hi) / 2, np.abs(hi - lo))
    client = _RecordingClient()
    result = MedisamSegmentCore(client).segment(vol, seg, roi, modality="MR", window="400,40")
    _, box, k_range = MedisamSegmentCore.roi_to_slice_box(vol, roi)
    names = [c[0] for c in client.calls]
    assert names == ["open_session", "add_box3d", "propagate"]
    assert client.calls[0][1]["modality"] == "MR" and client.calls[0][1]["window"] == "400,40"
    assert client.calls[0][1]["axis"] == 0  # every slice sent is a k slice, not the server's default axis
    assert client.calls[1][1] == {"box": box, "slice_range": k_range}
    lo_k, hi_k = k_range
    assert result.slices == (lo_k, hi_k)  # the block is cut to the ROI's slices
    assert result.notices == ("object 1: the j view is left out of the vote",)  # shown in the status label
    # the old path: box on the middle slice only
    client = _RecordingClient()
    MedisamSegmentCore(client).segment(vol, seg, roi, box3d=False)
    assert [c[0] for c in client.calls] == ["open_session", "predict", "propagate"]
    assert client.calls[0][1]["modality"] is None


def test_roi_3d_box_on_a_live_server_stays_in_the_roi_slices(scene, tiny_url):
    from medisam.client import Client

    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 3]), _ras_of([50, 52, 5])
    roi = _roi((lo + hi) / 2, np.abs(hi - lo))
    _, _, (k0, k1) = MedisamSegmentCore.roi_to_slice_box(vol, roi)
    try:
        result = MedisamSegmentCore(Client(tiny_url, token=TOKEN)).segment(vol, seg, roi, modality="CT")
    except EmptySegmentationError:
        pytest.skip("the tiny random model gave an empty mask for this ROI")
    written = _segment_array(seg, result.segment_id, vol)
    ks = np.nonzero(written.reshape(len(written), -1).any(1))[0]
    assert k0 <= ks[0] and ks[-1] <= k1


def test_a_volume_thick_along_i_is_still_prompted_on_its_k_slices_on_a_live_server(scene, tiny_url):
    """The server slices a volume along its acquisition axis by default (here i, 5 mm): the module
    asks for axis 0, so its k-slice prompts are read as k slices."""
    from medisam.client import Client

    thick_i = IJK_TO_RAS.copy()
    thick_i[:3, :3] = _ROT @ np.diag([5.0, 0.7, 0.8])
    vol = slicer.util.addVolumeFromArray(_ball_volume(), thick_i, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    core = MedisamSegmentCore(Client(tiny_url, token=TOKEN))
    lo = (thick_i @ np.r_[15.0, 10.0, 3.0, 1.0])[:3]
    hi = (thick_i @ np.r_[50.0, 52.0, 5.0, 1.0])[:3]
    try:
        core.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), modality="CT", keep_session=True)
    except EmptySegmentationError:
        pass  # the tiny random model's mask does not matter: the session's axis does
    try:
        assert core.session is not None and core.session.info["axis"] == 0
    finally:
        core.close_session()


def test_segments_get_snomed_terminology_and_colour_from_their_names(scene):
    """A segment named "liver" gets Slicer's terminology entry with SNOMED CT codes and the liver colour;
    unknown names keep Slicer's defaults and are reported with close matches."""
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    mask = _ball_volume() > 0
    liver = MedisamSegmentCore.write_segment(vol, seg, mask, "liver")
    other = MedisamSegmentCore.write_segment(vol, seg, mask, "livr")
    segmentation = seg.GetSegmentation()
    entry = segmentation.GetSegment(liver).GetTerminology()
    assert "SCT^123037004^Anatomical Structure~SCT^10200004^Liver" in entry
    assert np.allclose(segmentation.GetSegment(liver).GetColor(), np.array([221, 130, 101]) / 255)
    assert "10200004" not in segmentation.GetSegment(other).GetTerminology()
    segmentation.GetSegment(other).SetName("Spleen")  # renamed by the user, then coded by name
    assert MedisamSegmentCore.code_segments(seg) == {}
    assert "SCT^78961009^Spleen" in segmentation.GetSegment(other).GetTerminology()
    segmentation.GetSegment(other).SetName("Segment_1")
    problems = MedisamSegmentCore.code_segments(seg)
    assert list(problems) == ["Segment_1"] and "unknown segment name" in problems["Segment_1"]


# ------------------------------------------------ RECIST line (markups line) and 3D clicks (markups points)
def _line(ijk0, ijk1):
    line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode")
    line.AddControlPoint(*_ras_of(ijk0))
    line.AddControlPoint(*_ras_of(ijk1))
    return line


def _points(*ijks):
    fid = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    for ijk in ijks:
        fid.AddControlPoint(*_ras_of(ijk))
    return fid


class _Session(_RecordingSession):
    info = {"shape": [9, 64, 64]}

    def add_recist(self, **kw):
        self.calls.append(("add_recist", kw))
        return np.ones(self.shape[1:], bool)

    def add_lasso(self, **kw):
        self.calls.append(("add_lasso", kw))
        return np.ones(self.shape[1:], bool)

    def add_scribble(self, **kw):
        self.calls.append(("add_scribble", kw))
        return np.ones(self.shape[1:], bool)

    def add_click(self, zyx, positive=True, obj_id=1):
        self.calls.append(("add_click", {"zyx": tuple(zyx), "positive": positive}))
        return {"rejected": zyx[0] == 8, "undo_steps": 1}

    def undo(self):
        self.calls.append(("undo", {}))
        return True

    def close(self):
        self.calls.append(("close", {}))


class _Client(_RecordingClient):
    def open_session(self, array, **kw):
        self.calls.append(("open_session", kw))
        return _Session(array.shape, self.calls)


def test_line_node_is_a_recist_line_on_its_slice(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    k, line = MedisamSegmentCore.line_to_recist(vol, _line([20, 30, 4], [48, 30, 4]))
    assert k == 4 and line == pytest.approx((20.5, 30.5, 48.5, 30.5))
    with pytest.raises(ValueError, match="on one slice"):
        MedisamSegmentCore.line_to_recist(vol, _line([20, 30, 3], [48, 30, 6]))
    client = _Client()
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    MedisamSegmentCore(client).segment(vol, seg, line_node=_line([20, 30, 4], [48, 30, 4]))
    names = [c[0] for c in client.calls]
    assert names == ["open_session", "add_recist", "propagate"]
    assert client.calls[1][1]["slice"] == 4 and client.calls[1][1]["line"] == pytest.approx(line)
    with pytest.raises(ValueError, match="one of an ROI, a RECIST line or a lasso"):
        lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
        MedisamSegmentCore(client).segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)),
                                           line_node=_line([20, 30, 4], [48, 30, 4]))


def test_points_become_3d_clicks_at_their_voxels_and_undo(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    client = _Client()
    logic = MedisamSegmentCore(client)
    with pytest.raises(ValueError, match="segment first"):
        logic.click(_points([30, 30, 4]))
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    logic.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), keep_session=True)
    assert "close" not in [c[0] for c in client.calls]
    out = logic.click(_points([30.2, 29.8, 4.1], [12, 40, 8]), positive=False)
    clicks = [c[1] for c in client.calls if c[0] == "add_click"]
    assert clicks == [{"zyx": (4, 30, 30), "positive": False}, {"zyx": (8, 40, 12), "positive": False}]
    assert (out.accepted, out.rejected) == (1, 1) and out.voxels == 9 * 100
    assert seg.GetSegmentation().GetNumberOfSegments() == 1  # replaced, not added
    logic.undo_click()
    assert [c[0] for c in client.calls].count("undo") == 1
    with pytest.raises(ValueError, match="no 3D click to undo"):
        logic.undo_click()
    with pytest.raises(ValueError, match="outside the volume"):
        logic.click(_points([30, 30, 20]))
    logic.close_session()
    assert client.calls[-1][0] == "close" and logic.session is None


def _assert_segment_is_the_session(seg, logic, vol, voxels: int, before: np.ndarray) -> None:
    """The kept segment, one, is the session's labels after a click that changed them."""
    after = _segment_array(seg, logic.kept[2], vol) > 0
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    assert np.array_equal(after, logic.session.labels() > 0) and int(after.sum()) == voxels
    assert not np.array_equal(after, before)  # the click changed the 3D result


def test_3d_click_on_a_live_server_updates_the_segment_and_undo_restores(scene, tiny_url):
    from medisam.client import Client

    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    logic = MedisamSegmentCore(Client(tiny_url, token=TOKEN))
    try:
        first = logic.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), keep_session=True, modality="CT")
        before = _segment_array(seg, first.segment_id, vol) > 0
        assert np.array_equal(before, logic.session.labels() > 0)
        done = None
        for ijk, positive in (([34, 30, 4], False), ([40, 24, 3], True), ([28, 36, 5], False)):
            r = logic.click(_points(ijk), positive=positive)
            if r.accepted:
                done = r
                break
        if done is None:
            pytest.skip("the tiny random model honoured none of the candidate clicks")
        if done.voxels == 0:  # the click removed the whole object (the tiny model's mask is scattered)
            assert seg.GetSegmentation().GetNumberOfSegments() == 0 and not (logic.session.labels() > 0).any()
        else:
            _assert_segment_is_the_session(seg, logic, vol, done.voxels, before)
        logic.undo_click()
        assert np.array_equal(_segment_array(seg, logic.kept[2], vol) > 0, before)
        added = logic.click(_points([40, 24, 3]), positive=True)  # a positive click never empties the object
        assert added.accepted and added.voxels > 0
        _assert_segment_is_the_session(seg, logic, vol, added.voxels, before)
        logic.undo_click()
        assert np.array_equal(_segment_array(seg, logic.kept[2], vol) > 0, before)
    finally:
        logic.close_session()


def test_guide_volumes_reach_the_kept_session_on_the_input_grid_only(scene, tiny_url):
    from medisam.client import Client

    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="flair")
    t1c = slicer.util.addVolumeFromArray((_ball_volume() // 2).astype(np.int16), IJK_TO_RAS, name="t1c")
    shifted = np.array(IJK_TO_RAS)
    shifted[:3, 3] += 5.0
    moved = slicer.util.addVolumeFromArray(_ball_volume(), shifted, name="moved")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    logic = MedisamSegmentCore(Client(tiny_url, token=TOKEN))
    try:
        with pytest.raises(ValueError, match="not on the input volume's grid"):
            logic.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), keep_session=True, guide_nodes=[moved])
        assert logic.session is None and seg.GetSegmentation().GetNumberOfSegments() == 0  # nothing opened
        with pytest.raises(ValueError, match="serves 3D corrective clicks only"):  # not dropped silently
            logic.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), guide_nodes=[t1c])
        assert logic.session is None and seg.GetSegmentation().GetNumberOfSegments() == 0
        result = logic.segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), keep_session=True,
                               modality="CT", guide_nodes=[t1c, None])
        assert result.session_info["guides"] == 1
        assert logic.add_guide(t1c) == 2
        with pytest.raises(ValueError, match="not on the input volume's grid"):
            logic.add_guide(moved)
    finally:
        logic.close_session()


# ------------------------------------------ scribbles (markups open curves) and a lasso (markups closed curve)
def _curve(*ijks, closed=False):
    curve = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode" if closed else "vtkMRMLMarkupsCurveNode")
    for ijk in ijks:
        curve.AddControlPoint(*_ras_of(ijk))
    return curve


def test_curves_become_polylines_on_their_slice_through_the_oblique_matrix(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    k, line = MedisamSegmentCore.curve_to_polyline(vol, _curve([20, 30, 4], [30, 30, 4], [30, 40, 4]), "scribble")
    pts = np.array(line)
    assert k == 4 and len(pts) > 3  # the curve as drawn (interpolated), not only its 3 control points
    assert pts[0] == pytest.approx((20.5, 30.5), abs=1e-6) and pts[-1] == pytest.approx((30.5, 40.5), abs=1e-6)
    assert pts[:, 0].min() >= 20.5 - 1.5 and pts[:, 1].max() <= 40.5 + 1.5  # it stays near its control points
    k, one = MedisamSegmentCore.curve_to_polyline(vol, _curve([12, 7, 3]), "scribble")
    assert (k, one) == (3, [pytest.approx((12.5, 7.5))])  # one point: one click
    k, ring = MedisamSegmentCore.curve_to_polyline(
        vol, _curve([20, 20, 5], [40, 20, 5], [40, 40, 5], [20, 40, 5], closed=True), "lasso", 3)
    ring = np.array(ring)
    assert k == 5 and ring[:, 0].min() < 21 and ring[:, 0].max() > 40 and ring[:, 1].max() > 40
    with pytest.raises(ValueError, match="draw the scribble on one slice"):
        MedisamSegmentCore.curve_to_polyline(vol, _curve([20, 30, 2], [30, 30, 6]), "scribble")
    with pytest.raises(ValueError, match="at least 3"):
        MedisamSegmentCore.curve_to_polyline(vol, _curve([20, 20, 5], [40, 20, 5], closed=True), "lasso", 3)


def test_lasso_and_scribbles_go_to_the_server_on_their_slices(scene):
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lasso = _curve([20, 20, 5], [40, 20, 5], [40, 40, 5], closed=True)
    plus, minus = _curve([25, 25, 5], [30, 30, 5]), _curve([10, 50, 3])
    client = _Client()
    MedisamSegmentCore(client).segment(vol, seg, lasso_node=lasso, scribble_node=plus, negative_scribble_node=minus)
    names = [c[0] for c in client.calls]
    assert names == ["open_session", "add_lasso", "add_scribble", "add_scribble", "propagate"]
    assert client.calls[1][1]["slice"] == 5 and len(client.calls[1][1]["polygon"]) > 3
    assert [(c[1]["slice"], c[1]["positive"]) for c in client.calls[2:4]] == [(5, True), (3, False)]
    assert client.calls[3][1]["polyline"] == [pytest.approx((10.5, 50.5))]
    client = _Client()  # a positive scribble alone starts the object
    MedisamSegmentCore(client).segment(vol, seg, scribble_node=plus)
    assert [c[0] for c in client.calls] == ["open_session", "add_scribble", "propagate"]
    lo, hi = _ras_of([15, 10, 2]), _ras_of([50, 52, 6])
    with pytest.raises(ValueError, match="one of an ROI, a RECIST line or a lasso"):
        MedisamSegmentCore(client).segment(vol, seg, _roi((lo + hi) / 2, np.abs(hi - lo)), lasso_node=lasso)
    with pytest.raises(ValueError, match="positive scribble"):  # a negative scribble alone prompts nothing
        MedisamSegmentCore(client).segment(vol, seg, negative_scribble_node=minus)


def test_lasso_on_a_live_server_is_the_segment_on_its_slice(scene, tiny_url):
    """The lasso's inside, drawn in RAS on an oblique volume, comes back as the segment on its slice:
    the same pixels as ``lasso_mask`` of the polygon in (i, j), through the server and Slicer's import."""
    from medisam.client import Client
    from medisam.prompting.shapes import lasso_mask

    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    lasso = _curve([22, 18, 4], [46, 20, 4], [44, 42, 4], [24, 40, 4], closed=True)
    k, polygon = MedisamSegmentCore.curve_to_polyline(vol, lasso, "lasso", 3)
    logic = MedisamSegmentCore(Client(tiny_url, token=TOKEN))
    result = logic.segment(vol, seg, lasso_node=lasso, propagate=False)
    written = _segment_array(seg, result.segment_id, vol) > 0
    assert k == 4 and np.array_equal(written[4], lasso_mask(polygon, (64, 64)))
    assert not written[[0, 1, 2, 3, 5, 6, 7, 8]].any()  # its slice, nothing else
    # a scribble after it corrects the object's 3D result (propagated first): its voxels join the object
    result = logic.segment(vol, seg, lasso_node=lasso, scribble_node=_curve([30, 30, 6], [34, 32, 6]),
                           propagate=False)
    written = _segment_array(seg, result.segment_id, vol) > 0
    assert written[6, 30, 30] and written[6, 32, 34]


# ------------------------------------- geometry: parent transforms, oriented ROIs, voxel edges, points vs ROI
def _linear_transform(shift_mm, angle: float = 0.0):
    """A linear transform node: a rotation by ``angle`` about S, then ``shift_mm`` (RAS)."""
    import vtk

    m = vtk.vtkMatrix4x4()
    rot = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, rot[r, c])
        m.SetElement(r, 3, shift_mm[r])
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetMatrixTransformToParent(m)
    return node


def _aligned_roi(lo_ijk, hi_ijk, ijk_to_world=IJK_TO_RAS):
    """An ROI whose axes follow the volume's i, j, k (as Slicer's "rotate to volume" draws it), spanning
    continuous IJK ``lo_ijk..hi_ijk`` of a volume whose IJK-to-world matrix is ``ijk_to_world``."""
    import vtk

    axes = np.asarray(ijk_to_world, float)[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    lo, hi = np.asarray(lo_ijk, float), np.asarray(hi_ijk, float)
    center = (ijk_to_world @ np.r_[(lo + hi) / 2, 1.0])[:3]
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, axes[r, c] / spacing[c])
        m.SetElement(r, 3, center[r])
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetAndObserveObjectToNodeMatrix(m)
    roi.SetSize(*((hi - lo) * spacing))
    return roi


def test_a_volume_under_a_parent_transform_is_prompted_and_written_where_it_is_shown(scene):
    """A volume under a linear transform: the ROI and points drawn where the volume shows (world RAS) map
    to its voxels, and the segment goes under the same transform; a non-linear transform is refused."""
    tr = _linear_transform((6.0, 6.0, 0.0), angle=0.2)
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    vol.SetAndObserveTransformNodeID(tr.GetID())
    world = np.array([[tr.GetMatrixTransformToParent().GetElement(r, c) for c in range(4)] for r in range(4)])
    roi = _aligned_roi([9.6, 4.6, 2.6], [20.4, 25.4, 5.4], world @ IJK_TO_RAS)
    assert MedisamSegmentCore.roi_to_slice_box(vol, roi) == (4, (10.0, 5.0, 21.0, 26.0), (3, 5))
    fid = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    fid.AddControlPoint(*(world @ np.r_[_ras_of([12.0, 9.0, 4.0]), 1.0])[:3])
    assert MedisamSegmentCore.markups_to_points(vol, fid, 1) == [(4, pytest.approx(12.0), pytest.approx(9.0), 1)]
    far = _linear_transform((40.0, 40.0, 0.0))
    vol.SetAndObserveTransformNodeID(far.GetID())  # the object shown 40 mm away, the ROI drawn there
    far_roi = _aligned_roi([9.6, 4.6, 2.6], [20.4, 25.4, 5.4], _shifted(IJK_TO_RAS, (40.0, 40.0, 0.0)))
    assert MedisamSegmentCore.roi_to_slice_box(vol, far_roi) == (4, (10.0, 5.0, 21.0, 26.0), (3, 5))
    vol.SetAndObserveTransformNodeID(tr.GetID())
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    result = MedisamSegmentCore(_RecordingClient()).segment(vol, seg, roi)
    assert seg.GetParentTransformNode() is not None and seg.GetParentTransformNode().GetID() == tr.GetID()
    written = _segment_array(seg, result.segment_id, vol) > 0
    expected = np.zeros((9, 64, 64), bool)
    expected[3:6, 20:30, 20:30] = True  # _RecordingSession's block, cut to the ROI's slices
    assert np.array_equal(written, expected)
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    MedisamSegmentCore.write_segment(slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="plain"),
                                     other, expected, "kept")
    with pytest.raises(ValueError, match="under another transform"):  # moving it would move its segment
        MedisamSegmentCore(_RecordingClient()).segment(vol, other, roi)
    bent = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformNode")
    bent.SetAndObserveTransformToParent(_thin_plate_spline())
    vol.SetAndObserveTransformNodeID(bent.GetID())
    with pytest.raises(ValueError, match="non-linear transform"):
        MedisamSegmentCore.roi_to_slice_box(vol, roi)


def _shifted(matrix: np.ndarray, shift_mm) -> np.ndarray:
    """``matrix`` moved by ``shift_mm`` (RAS): a volume's IJK-to-world under a pure shift."""
    out = np.array(matrix, float)
    out[:3, 3] += shift_mm
    return out


def _thin_plate_spline():
    """A non-linear (thin-plate spline) VTK transform."""
    import vtk

    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for p in ((0, 0, 0), (10, 0, 0), (0, 10, 0), (0, 0, 10)):
        source.InsertNextPoint(p)
        target.InsertNextPoint(p[0] + 1, p[1], p[2] * 1.1)
    tps = vtk.vtkThinPlateSplineTransform()
    tps.SetSourceLandmarks(source)
    tps.SetTargetLandmarks(target)
    tps.SetBasisToR()
    return tps


def test_an_roi_aligned_to_a_rotated_volume_maps_to_its_voxels_not_its_ras_bounds(scene):
    """The ROI's own orientation counts: an ROI rotated with the volume (29 degrees in-plane) covering voxels
    i, j 40..59 is that box, not the larger box around its axis-aligned RAS bounds."""
    tilt = np.eye(4)
    tilt[:3, :3] = np.array([[np.cos(0.5), -np.sin(0.5), 0], [np.sin(0.5), np.cos(0.5), 0], [0, 0, 1.0]])
    ijk_to_ras = tilt @ np.diag([1.0, 1.0, 2.0, 1.0])
    vol = slicer.util.addVolumeFromArray(np.zeros((20, 100, 100), np.int16), ijk_to_ras, name="tilted")
    roi = _aligned_roi([39.6, 39.6, 7.6], [59.4, 59.4, 11.4], ijk_to_ras)
    assert MedisamSegmentCore.roi_to_slice_box(vol, roi) == (9, (40.0, 40.0, 60.0, 60.0), (8, 11))
    roi = _aligned_roi([9.6, 4.6, 2.6], [20.4, 25.4, 5.4])  # and through the oblique, flipped test matrix
    ball = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    assert MedisamSegmentCore.roi_to_slice_box(ball, roi) == (4, (10.0, 5.0, 21.0, 26.0), (3, 5))


def test_an_roi_on_voxel_edges_covers_exactly_those_voxels(scene):
    """Faces exactly on voxel edges (i 6..28, j 30..46, k 5..19 of the hippocampus case): those voxels,
    no more; a voxel is inside when its centre is, whichever side the rounding error falls."""
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    ijk_to_ras[:3, 3] = [17.3, -4.1, 8.2]
    vol = slicer.util.addVolumeFromArray(np.zeros((36, 50, 35), np.int16), ijk_to_ras, name="hippocampus")
    for inset in (0.0, 1e-5, -1e-5, 0.1, 0.49):
        roi = _roi(*_roi_box([6 - 0.5 + inset, 30 - 0.5 + inset, 5 - 0.5 + inset],
                             [28 + 0.5 - inset, 46 + 0.5 - inset, 19 + 0.5 - inset], ijk_to_ras))
        assert MedisamSegmentCore.roi_to_slice_box(vol, roi) == (12, (6.0, 30.0, 29.0, 47.0), (5, 19)), inset
    roi = _roi(*_roi_box([6.51, 30.51, 5.51], [27.49, 45.49, 18.49], ijk_to_ras))  # past the centres: one less
    assert MedisamSegmentCore.roi_to_slice_box(vol, roi) == (12, (7.0, 31.0, 28.0, 46.0), (6, 18))


def _roi_box(lo_ijk, hi_ijk, ijk_to_ras):
    """(centre, size) in RAS of the axis-aligned ROI spanning continuous IJK ``lo_ijk..hi_ijk``."""
    lo, hi = ((ijk_to_ras @ np.r_[np.asarray(p, float), 1.0])[:3] for p in (lo_ijk, hi_ijk))
    return (lo + hi) / 2, np.abs(hi - lo)


@pytest.mark.parametrize("box3d", [False, True])
def test_a_point_outside_the_roi_slices_is_an_error_before_any_request(scene, box3d):
    """With an ROI the object lives on its slices; a point off them would be dropped (2D box path) or
    refused after the upload (3D box): it is named, with the ROI's slice range, before anything is sent."""
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    roi = _aligned_roi([9.6, 4.6, 2.6], [50.4, 50.4, 5.4])
    client = _RecordingClient()
    with pytest.raises(ValueError, match=r"the positive point at \(i, j\) = \(30, 30\) lies on slice 7, outside the ROI's slice range 3\.\.5"):
        MedisamSegmentCore(client).segment(vol, seg, roi, positive_node=_points([30, 30, 7]), box3d=box3d)
    assert client.calls == [] and seg.GetSegmentation().GetNumberOfSegments() == 0
    MedisamSegmentCore(client).segment(vol, seg, roi, positive_node=_points([30, 30, 4]), box3d=box3d)
    assert seg.GetSegmentation().GetNumberOfSegments() == 1  # a point on the ROI's slices is fine


@pytest.mark.parametrize("box3d", [False, True])
def test_a_scribble_outside_the_roi_slices_is_an_error_before_any_request(scene, box3d):
    """A scribble off an ROI's slices would correct voxels the ROI then cuts away: named before anything is sent."""
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    roi = _aligned_roi([9.6, 4.6, 2.6], [50.4, 50.4, 5.4])
    client = _RecordingClient()
    said = r"the negative scribble lies on slice 7, outside the ROI's slice range 3\.\.5"
    with pytest.raises(ValueError, match=said):
        MedisamSegmentCore(client).segment(vol, seg, roi, negative_scribble_node=_curve([20, 20, 7], [30, 30, 7]),
                                           box3d=box3d)
    assert client.calls == [] and seg.GetSegmentation().GetNumberOfSegments() == 0
    MedisamSegmentCore(client).segment(vol, seg, roi, negative_scribble_node=_curve([20, 20, 4], [30, 30, 4]),
                                       box3d=box3d)
    assert seg.GetSegmentation().GetNumberOfSegments() == 1  # one on the ROI's slices is sent


def test_an_roi_under_a_non_linear_transform_is_refused(scene):
    """The ROI's corners through its own matrix would ignore a bending transform on it: an error naming it."""
    vol = slicer.util.addVolumeFromArray(_ball_volume(), IJK_TO_RAS, name="ct")
    roi = _aligned_roi([9.6, 4.6, 2.6], [20.4, 25.4, 5.4])
    assert MedisamSegmentCore.roi_to_slice_box(vol, roi) == (4, (10.0, 5.0, 21.0, 26.0), (3, 5))
    bent = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformNode")
    bent.SetAndObserveTransformToParent(_thin_plate_spline())
    roi.SetAndObserveTransformNodeID(bent.GetID())
    with pytest.raises(ValueError, match="ROI .* is under a non-linear transform"):
        MedisamSegmentCore.roi_to_slice_box(vol, roi)
