import numpy as np
import pytest
from conftest import SAMPLE, synthetic_cell
from skimage.feature import graycomatrix, graycoprops

from bloodcli.errors import UsageError
from bloodcli.features import (
    EXTRACTORS,
    build_extractors,
    extractors_from_specs,
    parse_feature_names,
)
from bloodcli.features.base import CellImage
from bloodcli.features.texture import (
    GLCM_PROPERTIES,
    glcm,
    glcm_offsets,
    glcm_properties,
)
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.images import read_image

# Golden values: recomputing them must give the same numbers; a change means every cached
# feature and every trained model changes too (bump the extractor's version).
GOLDEN_NEUTROPHIL = {  # sample_data/pbc/neutrophil/BNE_225075.jpg; distances found coarse, pixels fine (version 4)
    "glcm_contrast_d1_mean": 4.692941188812256,
    "glcm_correlation_d2_mean": 0.8905217051506042,
    "glcm_entropy_d4_mean": 5.001461505889893,
    "shape_cell_area": 9240.0,
    "shape_cell_solidity": 0.9879183173179626,
    "shape_nucleus_area_ratio": 0.5298701524734497,
    "color_rgb_r_mean": 119.62510681152344,
    "color_hsv_s_p50": 139.0,
    "color_lab_b_mean": 97.4969711303711,
    "color_nucleus_rgb_b_mean": 131.5720977783203,
    "color_hsv_h_hist12": 0.17370130121707916,
}
GOLDEN_NEUTROPHIL_V3 = {  # the same, version 3 (masks at full resolution, reaching the whole cytoplasm)
    "glcm_contrast_d1_mean": 4.21937370300293,
    "glcm_correlation_d2_mean": 0.9254478216171265,
    "glcm_entropy_d4_mean": 5.319093704223633,
    "shape_cell_area": 13160.0,
    "shape_cell_solidity": 0.9898458123207092,
    "shape_nucleus_area_ratio": 0.398024320602417,
    "color_rgb_r_mean": 140.96412658691406,
    "color_hsv_s_p50": 91.0,
    "color_lab_b_mean": 104.10189819335938,
    "color_nucleus_rgb_b_mean": 133.46812438964844,
    "color_hsv_h_hist12": 0.1670212745666504,
}
GOLDEN_NEUTROPHIL_V2 = {  # the same, version 2 of the extractors (first masks), as earlier model files need
    "glcm_contrast_d1_mean": 4.411708831787109,
    "glcm_correlation_d2_mean": 0.892765462398529,
    "glcm_entropy_d4_mean": 5.116844654083252,
    "shape_cell_area": 12204.0,
    "shape_cell_solidity": 0.7583892345428467,
    "shape_nucleus_area_ratio": 0.4292035400867462,
    "color_rgb_r_mean": 132.369140625,
    "color_hsv_s_p50": 104.0,
    "color_lab_b_mean": 100.28678894042969,
    "color_nucleus_rgb_b_mean": 133.46812438964844,
    "color_hsv_h_hist12": 0.18166175484657288,
}


def features_of(image, version: str | None = None) -> dict[str, float]:
    extractors = build_extractors("glcm,shape,color")
    if version is not None:
        extractors = extractors_from_specs([dict(e.spec(), version=version) for e in extractors])
    cell = CellImage(image, extractors[0].mask_version)
    return {n: float(v) for e in extractors for n, v in zip(e.feature_names(), e.compute(cell))}


@pytest.mark.parametrize(
    "version, golden", [(None, GOLDEN_NEUTROPHIL), ("3", GOLDEN_NEUTROPHIL_V3), ("2", GOLDEN_NEUTROPHIL_V2)], ids=["current", "v3", "v2"]
)
def test_golden_values_on_a_real_sample(version, golden):
    values = features_of(read_image(SAMPLE / "pbc" / "neutrophil" / "BNE_225075.jpg"), version)
    for name, expected in golden.items():
        assert values[name] == pytest.approx(expected, rel=1e-5), name


def test_synthetic_cell_has_the_geometry_it_was_drawn_with():
    values = features_of(synthetic_cell(size=96, cell_radius=30, nucleus_radius=14))
    assert values["shape_nucleus_area"] == pytest.approx(np.pi * 14**2, rel=0.02)
    assert values["shape_nucleus_eccentricity"] < 0.1
    assert values["shape_nucleus_circularity"] > 0.9
    assert values["shape_nucleus_lobes"] == 1
    assert values["shape_cell_eccentricity"] < 0.2
    assert values["color_nucleus_rgb_r_mean"] == 90 and values["color_nucleus_rgb_b_mean"] == 140
    assert values["color_cytoplasm_rgb_r_mean"] == 200 and values["color_cytoplasm_rgb_g_mean"] == 150
    assert 0 < values["shape_nucleus_area_ratio"] < 1


def test_two_nuclei_count_as_two_lobes():
    image = synthetic_cell(size=120, cell_radius=45, nucleus_radius=1)
    image[45:75, 36:56] = (90, 40, 140)  # two lobes 8 px apart
    image[45:75, 64:84] = (90, 40, 140)
    assert features_of(image)["shape_nucleus_lobes"] == 2


def test_glcm_equals_scikit_image():
    image = np.random.default_rng(0).integers(0, 8, (20, 23))
    distances, angles = [1, 2], [0, 45, 90, 135]
    reference = graycomatrix(image.astype(np.uint8), distances, np.deg2rad(angles), levels=8, symmetric=True, normed=True)
    ours = glcm(image, 8, glcm_offsets(distances, angles))
    np.testing.assert_allclose(ours, reference.reshape(8, 8, -1), atol=1e-12)
    props = glcm_properties(ours)
    for prop in GLCM_PROPERTIES:
        np.testing.assert_allclose(props[prop], graycoprops(reference, prop).ravel(), atol=1e-9, err_msg=prop)


def test_glcm_mask_excludes_background_pairs():
    image = np.zeros((10, 10), int)
    image[:, 5:] = 3
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    matrices = glcm(image, 4, [(0, 1)], mask=mask)
    assert matrices[3, 3, 0] == pytest.approx(1.0)  # only the uniform masked half is counted


def test_names_match_values_and_are_unique_for_every_extractor():
    cell = CellImage(synthetic_cell())
    all_names = []
    for extractor in build_extractors("glcm,shape,color"):
        values = extractor.compute(cell)
        assert values.dtype == np.float32 and values.shape == (len(extractor.feature_names()),)
        assert np.isfinite(values).all()
        all_names += extractor.feature_names()
    assert len(all_names) == len(set(all_names))


def test_options_change_the_output_and_the_fingerprint():
    default, custom = build_extractors("glcm"), build_extractors("glcm", ["glcm.distances=1,3", "glcm.levels=16"])
    assert custom[0].params["distances"] == [1, 3] and custom[0].params["levels"] == 16
    assert default[0].fingerprint() != custom[0].fingerprint()
    assert len(custom[0].feature_names()) == len(GLCM_PROPERTIES) * 2 * 2


@pytest.mark.parametrize(
    "spec, options, message",
    [("glcm,nope", None, "unknown feature extractor"), ("glcm", ["glcm.nope=1"], "unknown option"),
     ("glcm", ["glcm.levels=1"], "between 2 and 256"), ("glcm", ["shape.hu_moments=0"], "unselected"),
     ("glcm", ["glcm.levels=abc"], "bad value")],
)  # fmt: skip
def test_bad_feature_specs(spec, options, message):
    with pytest.raises(UsageError, match=message):
        build_extractors(spec, options)


def test_parse_accepts_plus_and_commas_without_repeats():
    assert parse_feature_names("glcm+shape,color,glcm") == ["glcm", "shape", "color"]
    assert set(EXTRACTORS) >= {"glcm", "shape", "color"}


def test_blank_image_gives_finite_features():
    blank = np.full((50, 50, 3), 240, np.uint8)
    assert all(np.isfinite(v) for v in features_of(blank).values())


def test_preprocessing_steps():
    image = read_image(SAMPLE / "pbc" / "neutrophil" / "BNE_225075.jpg")
    resized = Preprocessing(resize=100).apply(image)
    assert max(resized.shape[:2]) == 100
    grey = Preprocessing(grayscale=True, clahe_clip=2.0, median_size=3, gaussian_sigma=1.0).apply(image)
    assert grey.shape == image.shape and (grey[..., 0] == grey[..., 2]).all()
    with pytest.raises(UsageError):
        Preprocessing(median_size=4)


def test_coarse_to_fine_masks_agree_with_the_full_resolution_masks_on_the_sample_crops():
    """Version 4's masks (distances on a reduced copy) against version 3's (every step at full resolution)."""
    from bloodcli.imaging.cell_mask import segment_single_cell, segment_single_cell_v2
    from bloodcli.segmentation.scoring import mask_overlap

    cell_dice, nucleus_dice = [], []
    for path in sorted((SAMPLE / "pbc").glob("*/*.jpg")):
        image = read_image(path)
        (cell, nucleus), (full_cell, full_nucleus) = segment_single_cell(image), segment_single_cell_v2(image)
        cell_dice.append(mask_overlap(cell, full_cell)[0])
        nucleus_dice.append(mask_overlap(nucleus, full_nucleus)[0])
    assert len(cell_dice) == 60
    assert np.median(cell_dice) > 0.98 and np.median(nucleus_dice) > 0.98
    assert np.mean(np.array(cell_dice) > 0.8) > 0.85  # the few that differ: leaks into a neighbour that v3 made


@pytest.mark.parametrize("dots", [10, 400], ids=["8-bit labels", "more than 256 components"])
def test_components_holding_a_seed_are_kept_whole(dots):
    from bloodcli.imaging.cell_mask import _components_holding

    mask = np.zeros((64, 7 * dots), bool)
    for k in range(dots):
        mask[10:20, 7 * k : 7 * k + 3] = True  # separate bars, 4 background columns apart
    seeds = np.zeros_like(mask)
    seeds[15, 7 * np.arange(0, dots, 3)] = True  # one pixel in every third bar
    seeds[40, 5] = True  # a seed on the background selects nothing
    kept = _components_holding(mask, seeds)
    expected = mask.copy()
    for k in range(dots):
        if k % 3:
            expected[:, 7 * k : 7 * k + 3] = False
    assert np.array_equal(kept, expected)
