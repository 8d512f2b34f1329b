"""The methods users bring from the literature: LBP and Gabor texture, more classifiers, whole-image features."""

import io
import json
import zipfile

import cv2
import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import ModelFileError
from bloodcli.features import CellImage, build_extractors, extractors_from_specs
from bloodcli.features.gabor import gabor_magnitude
from bloodcli.features.lbp import lbp_histogram
from bloodcli.io.images import read_image
from bloodcli.learn.model_file import TrainedModel

NEUTROPHIL = SAMPLE / "pbc" / "neutrophil" / "BNE_225075.jpg"


def _gray() -> np.ndarray:
    return cv2.cvtColor(read_image(NEUTROPHIL), cv2.COLOR_RGB2GRAY)


@pytest.mark.parametrize("radius, points", [(1, 8), (2, 16), (3, 24)])
def test_lbp_histogram_matches_scikit_image(radius, points):
    from skimage.feature import local_binary_pattern

    gray = _gray()
    codes = local_binary_pattern(gray, points, radius, method="uniform")
    expected = np.bincount(codes.astype(int).ravel(), minlength=points + 2) / codes.size
    np.testing.assert_allclose(lbp_histogram(gray, radius, points), expected)
    mask = np.zeros(gray.shape, bool)
    mask[100:200, 120:260] = True
    inside = np.bincount(codes[mask].astype(int), minlength=points + 2) / mask.sum()
    np.testing.assert_allclose(lbp_histogram(gray, radius, points, mask), inside)


@pytest.mark.parametrize("wavelength, angle", [(4.0, 0), (8.0, 45), (16.0, 90)])
def test_gabor_magnitude_matches_scikit_image(wavelength, angle):
    from skimage.filters import gabor

    gray = _gray()[60:220, 60:220]
    real, imaginary = gabor(gray.astype(np.float64), 1.0 / wavelength, theta=np.deg2rad(angle), mode="reflect")
    np.testing.assert_allclose(gabor_magnitude(gray, wavelength, angle), np.hypot(real, imaginary), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize(
    "version, expected",
    [
        (None, {"lbp_r1_p8_u0": 0.032359, "lbp_r2_p16_u17": 0.252489, "gabor_l4_o0_mean": 1.929794, "gabor_l16_o90_std": 3.057276}),
        ("1", {"lbp_r1_p8_u0": 0.029103, "lbp_r2_p16_u17": 0.228343, "gabor_l4_o0_mean": 1.892582, "gabor_l16_o90_std": 2.968864}),
    ],
    ids=["current", "v1"],
)
def test_golden_lbp_and_gabor_values_on_a_real_sample(version, expected):
    extractors = build_extractors("lbp,gabor")
    if version is not None:  # earlier model files' version: the masks it was measured on
        extractors = extractors_from_specs([dict(e.spec(), version=version) for e in extractors])
    cell = CellImage(read_image(NEUTROPHIL), extractors[0].mask_version)
    values = {n: float(v) for e in extractors for n, v in zip(e.feature_names(), e.compute(cell))}
    assert len(values) == 10 + 18 + 26 + 24
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-4), name
    assert abs(sum(v for n, v in values.items() if n.startswith("lbp_r1_")) - 1) < 1e-5  # a histogram


def test_lbp_and_gabor_texture_tell_the_classes_apart(tmp_path):
    result = CliRunner().invoke(app, ["train", str(SAMPLE / "pbc"), "-f", "lbp,gabor,shape", "-m", "knn", "--folds", "3",
                                      "--json", "--no-cache", "-j", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["accuracy"] > 0.8


def _texture_dataset(root):
    """Two classes of whole-image textures (no cell, one purple speck): horizontal stripes and random speckle."""
    rng = np.random.default_rng(0)
    for label in ("stripes", "speckle"):
        (root / label).mkdir(parents=True)
        for k in range(8):
            if label == "stripes":
                rows = (np.sin(np.arange(96) * (0.5 + 0.05 * k)) > 0)[:, None] * np.ones((1, 96))
                image = (150 + 60 * rows + rng.normal(0, 8, (96, 96)))
            else:
                image = 180 + rng.normal(0, 35, (96, 96))
            rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            cv2.circle(rgb, (20 + 5 * k, 30), 6, (160, 40, 150), -1)  # a purple speck: what a cell search latches on to
            cv2.imwrite(str(root / label / f"{k}.png"), rgb)
    return root


def test_whole_image_features_train_and_predict_where_there_is_no_cell(tmp_path):
    data = _texture_dataset(tmp_path / "textures")
    run = lambda *args: CliRunner().invoke(app, [str(a) for a in args])  # noqa: E731
    model = tmp_path / "m.bcm"
    trained = run("train", data, "-f", "glcm,lbp,color", "-m", "logreg", "--roi", "image", "--folds", "2", "-o", model, "--json", "--no-cache")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["metrics"]["accuracy"] == 1.0
    predicted = run("predict", model, data / "speckle" / "3.png", data / "stripes" / "5.png", "--no-cache")
    assert predicted.exit_code == 0 and [line.split(",")[1] for line in predicted.stdout.splitlines()[1:]] == ["speckle", "stripes"]
    assert TrainedModel.load(model).settings.preprocessing.roi == "image"
    whole = run("extract", data, "-o", tmp_path / "image.csv", "-f", "lbp", "--roi", "image", "--no-cache")
    cell = run("extract", data, "-o", tmp_path / "cell.csv", "-f", "lbp", "--no-cache")
    assert whole.exit_code == cell.exit_code == 0
    assert (tmp_path / "image.csv").read_text() != (tmp_path / "cell.csv").read_text()


def _tampered_tree_model(tmp_path, tamper) -> str:
    """A decision-tree model file whose tree arrays were edited by ``tamper(tree_state)``."""
    import skops.io as sio

    train = CliRunner().invoke(app, ["train", str(SAMPLE / "pbc"), "-f", "color", "-m", "dt", "-o", str(tmp_path / "dt.bcm"), "--no-cache"])
    assert train.exit_code == 0, train.output
    model = TrainedModel.load(tmp_path / "dt.bcm")
    tamper(model.estimator.tree_)
    buffer = io.BytesIO()
    with zipfile.ZipFile(tmp_path / "dt.bcm") as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            data = sio.dumps(model.estimator) if name == "estimator.skops" else source.read(name)
            target.writestr(name, data)
    path = tmp_path / "bad.bcm"
    path.write_bytes(buffer.getvalue())
    return str(path)


@pytest.mark.parametrize("tamper", [
    lambda tree: tree.children_left.__setitem__(0, 10**6),  # points outside the node array
    lambda tree: tree.children_left.__setitem__(0, 0),  # points at itself: an endless loop
    lambda tree: tree.feature.__setitem__(0, -5),  # a negative column
], ids=["out-of-range", "self-loop", "negative-feature"])  # fmt: skip
def test_a_bare_decision_tree_with_bad_indices_is_refused(tmp_path, tamper):
    path = _tampered_tree_model(tmp_path, tamper)
    with pytest.raises(ModelFileError, match="refused"):
        TrainedModel.load(path)
