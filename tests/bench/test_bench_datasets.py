"""Dataset adapters on tiny synthetic folders: 2D, nnU-Net 3D, CVPR24 npz, instance maps, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medisam.bench.datasets import DatasetOptions, discover_cases, iter_cases
from medisam.errors import InputError


def make_2d_dataset(root, n=3, size=48, bad=()):
    """images/ + masks/ PNG pairs; each mask holds two squares (labels 1 and 2)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        lab = np.zeros((size, size), np.uint8)
        lab[5:20, 5 + i:20 + i] = 1
        lab[28:40, 25:45] = 2
        img[lab > 0] += 150
        Image.fromarray(img).save(root / "images" / f"case{i}.png")
        if f"case{i}" != "missing" and i not in bad:
            Image.fromarray(lab).save(root / "masks" / f"case{i}.png")
    return root


def test_2d_folder_with_sidecar(tmp_path):
    root = make_2d_dataset(tmp_path / "toy2d")
    (root / "medisam.json").write_text(json.dumps({"modality": "us", "labels": {"1": "lesion"}}))
    cases = list(iter_cases(root))
    assert [c.case_id for c in cases] == ["case0", "case1", "case2"]
    c = cases[0]
    assert c.dataset == "toy2d" and c.modality == "US"
    assert [(t.name, t.id, t.area) for t in c.targets] == [("lesion", "1", 225), ("label2", "2", 240)]
    assert c.labels.array.shape == c.image.spatial_shape
    # explicit options win over the sidecar
    assert next(iter_cases(root, DatasetOptions(modality="ES"))).modality == "ES"


def test_components_and_min_area(tmp_path):
    root = make_2d_dataset(tmp_path / "cc", n=1)
    lab = np.array(Image.open(root / "masks" / "case0.png"))
    lab[42:44, 2:4] = 1  # a 4-pixel second component of label 1
    Image.fromarray(lab).save(root / "masks" / "case0.png")
    case = next(iter_cases(root, DatasetOptions(targets="component")))
    assert [t.id for t in case.targets] == ["1.c1", "1.c2", "2.c1"]
    case = next(iter_cases(root, DatasetOptions(targets="component", min_area=5)))
    assert [t.id for t in case.targets] == ["1.c1", "2.c1"]


def test_instance_label_map(tmp_path):
    root = tmp_path / "nuclei"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lab = np.zeros((40, 40), np.uint16)
    for k in range(1, 301):  # ids above 255 need 16-bit PNG
        if k in (7, 300):
            y, x = divmod(k % 9, 3)
            lab[y * 12:y * 12 + 6 + (k == 300), x * 12:x * 12 + 6] = k
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "images" / "t.png")
    Image.fromarray(lab).save(root / "masks" / "t.png")
    case = next(iter_cases(root, DatasetOptions(targets="instance", target_name="nucleus", max_targets=1)))
    assert [(t.name, t.id, t.area) for t in case.targets] == [("nucleus", "300", 42)]


def test_nnunet_volume_with_dataset_json(tmp_path):
    root = tmp_path / "Dataset001_Toy"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    vol = np.random.default_rng(0).random((6, 20, 24)).astype(np.float32)
    lab = np.zeros((6, 20, 24), np.uint8)
    lab[1:4, 5:12, 6:15] = 1
    for case in ("a", "b"):
        img = sitk.GetImageFromArray(vol)
        img.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(img, str(root / "imagesTr" / f"{case}_0000.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(vol), str(root / "imagesTr" / f"{case}_0001.nii.gz"))
        labimg = sitk.GetImageFromArray(lab)
        labimg.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(labimg, str(root / "labelsTr" / f"{case}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"},
                                                  "labels": {"background": 0, "prostate": 1}}))
    refs = discover_cases(root)
    assert [r.case_id for r in refs] == ["a", "b"]  # one case per case, not per channel
    c = refs[0].load()
    assert c.modality == "MR" and c.image.is_volume
    assert c.image.spacing == pytest.approx((0.8, 0.8, 3.0))
    assert [(t.name, t.area) for t in c.targets] == [("prostate", 3 * 7 * 9)]
    # the other channel guides the 3D clicks, unless guides are switched off
    assert [p.name for p in c.guide_paths] == ["a_0001.nii.gz"]
    assert len(c.read_guides()) == 1
    off = discover_cases(root, DatasetOptions(guides=False))[0].load()
    assert off.guide_paths == () and off.read_guides() == []
    assert DatasetOptions.from_dict({"guides": False}).guides is False


def test_decathlon_4d_cases_read_one_channel_and_guide_with_the_others(tmp_path):
    """The Decathlon's own layout: <case>.nii.gz holding a case's modalities as 4D volumes, and a
    3D case named like a channel file; the chosen channel's modality comes from dataset.json."""
    import nibabel as nib

    root = tmp_path / "Task01"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    lab = np.zeros((12, 10, 6), np.uint8)  # nibabel order (x, y, z)
    lab[3:8, 2:7, 1:4] = 1
    vol = np.stack([np.full(lab.shape, 10.0), np.full(lab.shape, 20.0), np.full(lab.shape, 30.0)], -1)
    vol[lab > 0] += 100
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), root / "imagesTr" / "BRATS_001.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / "BRATS_001.nii.gz")
    nib.save(nib.Nifti1Image(vol[..., 0].astype(np.float32), np.eye(4)), root / "imagesTr" / "case_0007.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / "case_0007.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "CT", "2": "T1w"},
                                                  "labels": {"0": "background", "1": "tumour"}}))
    refs = discover_cases(root)
    assert [r.case_id for r in refs] == ["BRATS_001", "case_0007"]
    four_d, three_d = (r.load() for r in refs)
    assert four_d.modality == "MR" and float(four_d.image.array.min()) == 10.0  # channel 0
    guides = four_d.read_guides()
    assert [float(g.array.min()) for g in guides] == [20.0, 30.0]
    assert three_d.read_guides() == [] and three_d.image.array.shape == four_d.image.array.shape
    second = discover_cases(root, DatasetOptions(channel=1))[0].load()
    assert second.modality == "CT" and float(second.image.array.min()) == 20.0
    assert [float(g.array.min()) for g in second.read_guides()] == [10.0, 30.0]
    assert discover_cases(root, DatasetOptions(guides=False))[0].load().read_guides() == []
    # a medisam.json that picks the channel picks its modality too; the command line's channel wins
    (root / "medisam.json").write_text(json.dumps({"channel": 1}))
    sidecar = discover_cases(root)[0].load()
    assert sidecar.modality == "CT" and float(sidecar.image.array.min()) == 20.0
    assert discover_cases(root, DatasetOptions(channel=2))[0].load().modality == "MR"


def test_cvpr24_npz(tmp_path):
    root = tmp_path / "npzset"
    root.mkdir()
    gts = np.zeros((4, 16, 16), np.uint8)
    gts[1:3, 4:9, 4:9] = 2
    np.savez_compressed(root / "CT_x.npz", imgs=np.random.default_rng(0).integers(0, 255, (4, 16, 16)).astype(np.uint8),
                        gts=gts, spacing=np.array([1.0, 1.0, 2.5]))
    case = next(iter_cases(root, DatasetOptions(modality="CT")))
    assert case.case_id == "CT_x" and case.image.is_volume
    assert [(t.id, t.area) for t in case.targets] == [("2", 50)]
    # the CVPR challenges name a file after its modality: CT_..., MR_..., PET_..., Microscopy_...
    for name in ("MR_BraTS_001", "PET_autoPET_002", "Microscopy_cells_003", "scan_004", "CT"):
        np.savez_compressed(root / f"{name}.npz", imgs=np.zeros((2, 8, 8), np.uint8), gts=gts[:2, :8, :8])
    found = {c.case_id: c.modality for c in iter_cases(root)}
    assert found == {"CT_x": "CT", "MR_BraTS_001": "MR", "PET_autoPET_002": "PT", "Microscopy_cells_003": "SM",
                     "scan_004": "OT", "CT": "OT"}
    assert {c.modality for c in iter_cases(root, DatasetOptions(modality="US"))} == {"US"}


def test_bad_cases_raise_one_line_errors(tmp_path):
    root = make_2d_dataset(tmp_path / "bad", n=4, bad=(1,))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "case2.png")  # wrong shape
    (root / "masks" / "case3.png").write_bytes(b"not a png")                             # unreadable
    refs = discover_cases(root)
    assert refs[0].load().targets
    with pytest.raises(InputError, match="no mask file"):
        refs[1].load()
    with pytest.raises(InputError, match="does not match"):
        refs[2].load()
    with pytest.raises(InputError):
        refs[3].load()
    assert [c.case_id for c in iter_cases(root)] == ["case0"]  # skip_errors logs and continues
    empty = make_2d_dataset(tmp_path / "empty", n=1)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(empty / "masks" / "case0.png")
    with pytest.raises(InputError, match="no target"):
        discover_cases(empty)[0].load()
    with pytest.raises(InputError, match="not a dataset folder"):
        discover_cases(tmp_path)


@pytest.mark.parametrize("mode", ["label", "instance", "component"])
def test_targets_keep_their_boxes_and_give_the_whole_mask_on_demand(mode):
    # a case's targets held one whole-grid mask each: memory grew with the objects (400 nuclei: 3.8 GB)
    from medisam.bench.datasets import extract_targets

    rng = np.random.default_rng(3)
    labels = np.zeros((20, 90, 110), np.uint16)
    for value in (2, 900, 60000):  # sparse 16-bit ids
        for _ in range(2):  # two components each
            z, y, x = rng.integers(0, 14), rng.integers(0, 80), rng.integers(0, 100)
            labels[z:z + 5, y:y + 7, x:x + 9] = value
    targets = extract_targets(labels, DatasetOptions(targets=mode))
    assert {t.label for t in targets} == {2, 900, 60000}
    for t in targets:
        if mode == "component":
            from scipy import ndimage

            comps, _ = ndimage.label(labels == t.label, structure=np.ones((3, 3, 3), bool))
            expected = comps == int(t.id.split(".c")[1])
        else:
            expected = labels == t.label
        np.testing.assert_array_equal(t.mask, expected)
        assert t.area == int(expected.sum())
        nz = np.nonzero(expected)
        assert t.box == tuple(slice(int(i.min()), int(i.max()) + 1) for i in nz)  # its tight box, not the grid
    assert sum(t.box_mask.size for t in targets) < labels.size
