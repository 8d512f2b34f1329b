import shutil

import pytest
from conftest import SAMPLE

from bloodcli.errors import DatasetError
from bloodcli.io.datasets import crop, load_dataset, load_inputs, read_voc_boxes


def test_class_folders():
    dataset = load_dataset(SAMPLE / "pbc")
    assert dataset.kind == "folder"
    assert dataset.classes == ["eosinophil", "lymphocyte", "neutrophil", "platelet"]
    assert dataset.class_counts() == {"eosinophil": 15, "lymphocyte": 15, "neutrophil": 15, "platelet": 15}
    assert dataset.groups is None


def test_csv_manifest_with_bom_relative_paths_and_groups(tmp_path, small_dataset):
    rows = ["path,label,group"]
    for i, image in enumerate(sorted(small_dataset.rglob("*.jpg"))):
        rows.append(f"{image.relative_to(tmp_path)},{image.parent.name},patient{i % 3}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    dataset = load_dataset(manifest)
    assert len(dataset) == 12 and dataset.kind == "csv"
    assert dataset.groups[:3] == ["patient0", "patient1", "patient2"]
    assert all(s.path.is_file() for s in dataset.samples)


def test_csv_missing_file_names_row_and_file(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nmissing.jpg,a\n")
    with pytest.raises(DatasetError, match=r"m.csv:2: .*missing.jpg: file not found"):
        load_dataset(manifest)
    with pytest.raises(DatasetError, match="no usable images"):
        load_dataset(manifest, skip_errors=True)


def test_csv_without_path_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,label\nx.jpg,a\n")
    with pytest.raises(DatasetError, match="needs a 'path' column"):
        load_dataset(manifest)


def test_voc_folder_gives_one_sample_per_box_grouped_by_image():
    dataset = load_dataset(SAMPLE / "bccd")
    assert dataset.kind == "voc"
    assert set(dataset.classes) == {"RBC", "WBC", "Platelets"}
    n_boxes = sum(len(read_voc_boxes(x)[1]) for x in (SAMPLE / "bccd" / "Annotations").glob("*.xml"))
    assert len(dataset) == n_boxes
    assert len(set(dataset.groups)) == 8
    assert all(s.box is not None and s.group == s.path.stem for s in dataset.samples)


def test_voc_class_filter_and_malformed_xml(tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(SAMPLE / "bccd", root)
    assert load_dataset(root, voc_classes=["WBC"]).classes == ["WBC"]
    (root / "Annotations" / "broken.xml").write_text("<annotation><filename>x.jpg</file")
    with pytest.raises(DatasetError, match="broken.xml: malformed VOC XML"):
        load_dataset(root)
    dataset = load_dataset(root, skip_errors=True)
    assert any("broken.xml" in path for path, _ in dataset.problems)


def test_empty_class_folder(small_dataset):
    (small_dataset / "empty").mkdir()
    with pytest.raises(DatasetError, match="'empty' has no images"):
        load_dataset(small_dataset)
    dataset = load_dataset(small_dataset, skip_errors=True)
    assert dataset.classes == ["lymphocyte", "neutrophil"] and dataset.problems


def test_single_class_dataset_is_refused_for_training(tmp_path, small_dataset):
    shutil.rmtree(small_dataset / "neutrophil")
    with pytest.raises(DatasetError, match="1 class"):
        load_dataset(small_dataset).require_classes(2)


def test_inputs_files_folders_and_globs(small_dataset):
    one = next(small_dataset.rglob("*.jpg"))
    assert len(load_inputs([str(one)])) == 1
    assert len(load_inputs([str(small_dataset)])) == 12
    assert len(load_inputs([str(small_dataset / "*" / "*.jpg")])) == 12
    with pytest.raises(DatasetError, match="no such image"):
        load_inputs([str(small_dataset / "nothing*.png")])


def test_crop_clips_to_image():
    import numpy as np

    image = np.zeros((10, 20, 3), np.uint8)
    assert crop(image, (15, 5, 40, 40)).shape == (5, 5, 3)
    assert crop(image, None) is image
