"""3D Slicer scripted module: segment the current volume with ``medisam serve``.

Install: in Slicer's Python console run ``slicer.util.pip_install("httpx")`` and
``slicer.util.pip_install("medisam --no-deps")`` (only ``medisam.client`` is used: numpy +
httpx), then add this folder in Edit > Application Settings > Modules. Start the server
with ``medisam serve --token TOKEN`` and enter its URL and token in the module panel.

The GUI (this file) only collects inputs; :class:`MedisamSegmentLogic` does the work and
is tested headless with slicer-core (see tests/slicer).
"""

from __future__ import annotations

import logging
import os

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedisamSegmentLib.logic import EmptySegmentationError, MedisamSegmentCore


class MedisamSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "medisam Segment"
        parent.categories = ["Segmentation"]
        parent.contributors = ["medisam developers"]
        parent.helpText = ("Segment an object from an ROI and/or points with a Segment Anything model "
                           "served by `medisam serve`; the result is added to a segmentation node.")
        parent.acknowledgementText = "Uses LiteMedSAM / MedSAM / SAM through medisam."


class MedisamSegmentLogic(ScriptedLoadableModuleLogic, MedisamSegmentCore):
    """Slicer logic = the Qt-free core with a client built from a URL and token."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None):
        ScriptedLoadableModuleLogic.__init__(self)
        from medisam.client import Client

        MedisamSegmentCore.__init__(self, Client(url, token=token or None))


class MedisamSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def setup(self):
        import ctk
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        VTKObservationMixin.__init__(self)
        box = ctk.ctkCollapsibleButton()
        box.text = "medisam"
        self.layout.addWidget(box)
        form = qt.QFormLayout(box)
        self.url = qt.QLineEdit(os.environ.get("MEDISAM_URL", "http://127.0.0.1:8000"))
        self.token = qt.QLineEdit(os.environ.get("MEDISAM_TOKEN", ""))
        self.token.setEchoMode(qt.QLineEdit.Password)
        form.addRow("Server URL:", self.url)
        form.addRow("Token:", self.token)
        self.volume = self._selector(["vtkMRMLScalarVolumeNode"], "Input volume:", form)
        self.roi = self._selector(["vtkMRMLMarkupsROINode"], "ROI (box):", form, none=True)
        self.line = self._selector(["vtkMRMLMarkupsLineNode"], "RECIST line (lesion long axis):", form, none=True)
        self.positive = self._selector(["vtkMRMLMarkupsFiducialNode"], "Positive points:", form, none=True)
        self.negative = self._selector(["vtkMRMLMarkupsFiducialNode"], "Negative points:", form, none=True)
        self.lasso = self._selector(["vtkMRMLMarkupsClosedCurveNode"], "Lasso (closed curve on one slice):", form,
                                    none=True)
        self.lasso.toolTip = "Traced around the object on one slice: its inside is the object there, and the seed"
        self.scribble = self._selector(["vtkMRMLMarkupsCurveNode"], "Scribble + (open curve on one slice):", form,
                                       none=True, children=False)
        self.negative_scribble = self._selector(["vtkMRMLMarkupsCurveNode"], "Scribble - (open curve on one slice):",
                                                form, none=True, children=False)
        self.segmentation = self._selector(["vtkMRMLSegmentationNode"], "Output segmentation:", form, add=True)
        self.modality = qt.QComboBox()
        self.modality.addItems(MODALITIES)
        self.modality.toolTip = "auto: the server's guess; CT uses Hounsfield windows, others min/max scaling"
        form.addRow("Modality:", self.modality)
        self.window = qt.QComboBox()
        self.window.editable = True
        self.window.addItems(WINDOWS)
        self.window.toolTip = "CT window preset or WIDTH,LEVEL (e.g. 400,40); auto = per-modality default"
        form.addRow("Window:", self.window)
        self.segment_name = qt.QLineEdit("medisam")
        self.segment_name.toolTip = ("Name of the new segment; a structure name (liver, spleen, tumor...) also sets "
                                     "its SNOMED CT codes and colour for DICOM-SEG export")
        form.addRow("Segment name:", self.segment_name)
        self.box3d = qt.QCheckBox("ROI is a 3D box (segment only the ROI's slices)")
        self.box3d.checked = True
        form.addRow(self.box3d)
        self.propagate = qt.QCheckBox("Propagate through the volume")
        self.propagate.checked = True
        form.addRow(self.propagate)
        self.keep = qt.QCheckBox("Keep the session for 3D corrective clicks")
        self.keep.checked = True
        form.addRow(self.keep)
        self.guide = self._selector(["vtkMRMLScalarVolumeNode"], "Guide channel for 3D clicks:", form, none=True)
        self.guide.toolTip = ("Optional: another image of the same volume on its grid (e.g. T1c beside FLAIR); "
                              "the 3D clicks see it, the model sees the input volume only")
        self.keep.toggled.connect(self.guide.setEnabled)  # a guide serves the kept session's clicks only
        self.run = qt.QPushButton("Segment")
        form.addRow(self.run)
        self.clicks = self._selector(["vtkMRMLMarkupsFiducialNode"], "3D click points:", form, none=True)
        self.negative_click = qt.QCheckBox("Negative (remove) clicks")
        form.addRow(self.negative_click)
        self.apply_clicks = qt.QPushButton("Apply 3D clicks")
        self.apply_clicks.toolTip = "Each point corrects the whole 3D result (the server re-propagates from it)"
        self.undo_click = qt.QPushButton("Undo last 3D click")
        form.addRow(self.apply_clicks)
        form.addRow(self.undo_click)
        self.status = qt.QLabel("")
        form.addRow(self.status)
        self.code = qt.QPushButton("Code segments by name")
        self.code.toolTip = "Set SNOMED CT codes and colours of the output segmentation's segments from their names"
        form.addRow(self.code)
        self.run.connect("clicked(bool)", self.onRun)
        self.apply_clicks.connect("clicked(bool)", self.onClicks)
        self.undo_click.connect("clicked(bool)", self.onUndoClick)
        self.logic = None
        self.code.connect("clicked(bool)", self.onCode)
        self.layout.addStretch(1)

    def _selector(self, classes, label, form, none=False, add=False, children=True):
        import qt

        sel = slicer.qMRMLNodeComboBox()
        sel.nodeTypes = classes
        sel.showChildNodeTypes = children  # an open curve's selector leaves closed curves (lassos) out
        sel.noneEnabled = none
        sel.addEnabled = add
        sel.renameEnabled = add
        sel.removeEnabled = False
        sel.setMRMLScene(slicer.mrmlScene)
        form.addRow(label, sel)
        return sel

    def onRun(self):
        volume, seg = self.volume.currentNode(), self.segmentation.currentNode()
        if volume is None:
            slicer.util.errorDisplay("Select an input volume.")
            return
        if seg is None:
            seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            seg.CreateDefaultDisplayNodes()
            self.segmentation.setCurrentNode(seg)
        if self.logic is not None:
            self.logic.close_session()
        logic = self.logic = MedisamSegmentLogic(self.url.text, self.token.text)
        try:
            with slicer.util.tryWithErrorDisplay("medisam segmentation failed.", waitCursor=True):
                result = logic.segment(volume, seg, self.roi.currentNode(), self.positive.currentNode(),
                                       self.negative.currentNode(), propagate=self.propagate.checked,
                                       modality=_auto(self.modality.currentText),
                                       window=_auto(self.window.currentText), box3d=self.box3d.checked,
                                       segment_name=self.segment_name.text.strip() or "medisam",
                                       line_node=self.line.currentNode(), keep_session=self.keep.checked,
                                       guide_nodes=[self.guide.currentNode()] if self.keep.checked else [],
                                       scribble_node=self.scribble.currentNode(),
                                       negative_scribble_node=self.negative_scribble.currentNode(),
                                       lasso_node=self.lasso.currentNode())
                self.status.text = "; ".join([f"segment {result.segment_id}: {result.voxels} voxels, slices "
                                              f"{result.slices}", *result.notices])
        except EmptySegmentationError as exc:
            self.status.text = str(exc)
        except Exception as exc:  # tryWithErrorDisplay has shown it
            logging.error("medisam: %s", exc)
            self.status.text = f"error: {exc}"

    def onClicks(self):
        if self.logic is None or self.clicks.currentNode() is None:
            slicer.util.errorDisplay("Segment first (with the session kept), then select the 3D click points.")
            return
        with slicer.util.tryWithErrorDisplay("medisam 3D click failed.", waitCursor=True):
            r = self.logic.click(self.clicks.currentNode(), positive=not self.negative_click.checked)
            self.status.text = f"3D clicks: {r.accepted} applied, {r.rejected} rejected; {r.voxels} voxels"

    def onUndoClick(self):
        if self.logic is None:
            return
        with slicer.util.tryWithErrorDisplay("medisam undo failed.", waitCursor=True):
            self.status.text = f"3D click undone; {self.logic.undo_click()} voxels"

    def cleanup(self):
        if getattr(self, "logic", None) is not None:
            self.logic.close_session()

    def onCode(self):
        seg = self.segmentation.currentNode()
        if seg is None:
            slicer.util.errorDisplay("Select an output segmentation.")
            return
        problems = MedisamSegmentCore.code_segments(seg)
        self.status.text = "all segments coded" if not problems else "not coded: " + "; ".join(problems.values())


#: Modality choices (auto = let the server decide) and window presets offered in the module.
MODALITIES = ("auto", "CT", "MR", "PT", "US", "XA", "CR")
WINDOWS = ("auto", "soft_tissue", "abdomen", "liver", "lung", "bone", "brain", "mediastinum")


def _auto(text: str) -> str | None:
    """The combo's text, or None for "auto"/empty."""
    text = (text or "").strip()
    return None if text.lower() in ("", "auto") else text
