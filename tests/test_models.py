import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import SAMPLE

from bloodcli import api
from bloodcli.errors import ModelFileError
from bloodcli.learn.classifiers import CLASSIFIERS
from bloodcli.learn.model_file import TrainedModel, train_model


@pytest.fixture(scope="module")
def sample_table():
    return api.featurize(SAMPLE / "pbc", "glcm,shape,color", options=api.ExecutionOptions(use_cache=False, jobs=2))


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_each_classifier_trains_saves_loads_and_predicts(name, sample_table, tmp_path):
    model = train_model(sample_table, name, seed=0)
    probabilities = model.predict_proba(sample_table.values)
    assert probabilities.shape == (60, 4) and np.allclose(probabilities.sum(axis=1), 1)
    assert (model.predict(sample_table.values) == sample_table.labels).mean() > 0.9  # training fit
    path = tmp_path / f"{name}.bcm"
    model.save(path)
    loaded = TrainedModel.load(path)
    np.testing.assert_allclose(loaded.predict_proba(sample_table.values), probabilities, rtol=1e-5, atol=1e-6)
    assert loaded.classes == ["eosinophil", "lymphocyte", "neutrophil", "platelet"]
    assert loaded.settings == sample_table.settings
    assert loaded.provenance["training_data_fingerprint"] == model.provenance["training_data_fingerprint"]
    assert "scikit-learn" in loaded.provenance["versions"]


def test_cross_validated_training_is_well_above_chance(sample_table):
    model, result = api.train(sample_table, "svm", cv=5, seed=0, options=api.ExecutionOptions(jobs=2))
    assert result.metrics["accuracy"] > 0.8 and result.metrics["n_samples"] == 60
    assert model.metrics["protocol"].startswith("5-fold stratified")
    assert len(result.fold_metrics) == 5


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.bcm"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelFileError, match="not a bloodcli model"):
        TrainedModel.load(path)
    assert not marker.exists()


def test_untrusted_types_inside_a_model_file_are_refused(tmp_path, sample_table):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    good = tmp_path / "good.bcm"
    train_model(sample_table, "logreg").save(good)
    evil = tmp_path / "evil.bcm"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "estimator.skops":
                data = sio.dumps(FunctionTransformer(func=os.system))
            target.writestr(item, data)
    with pytest.raises(ModelFileError, match="outside the allow-list"):
        TrainedModel.load(evil)


def test_truncated_and_foreign_model_files(tmp_path, sample_table):
    path = tmp_path / "m.bcm"
    train_model(sample_table, "svm").save(path)
    truncated = tmp_path / "truncated.bcm"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ModelFileError, match="damaged"):
        TrainedModel.load(truncated)
    foreign = tmp_path / "foreign.bcm"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="unsupported model format"):
        TrainedModel.load(foreign)


def test_features_of_other_width_are_refused(sample_table):
    model = train_model(sample_table, "logreg")
    with pytest.raises(ModelFileError, match="expects 192 features"):
        model.predict_proba(sample_table.values[:, :10])


def test_classical_features_separate_the_eight_pbc_classes():
    """Real data when present: a tenth of ../shared/data/pbc (320 crops, 8 classes), 3-fold CV."""
    from conftest import require_shared

    from bloodcli.io.datasets import load_dataset
    from bloodcli.learn.validation import cross_validate

    dataset = load_dataset(require_shared("pbc"))
    table = api.featurize(dataset.subset(range(0, len(dataset), 10)), options=api.ExecutionOptions(jobs=2))
    metrics = cross_validate(table, "svm", folds=3, seed=0, jobs=2).metrics
    assert len(metrics["labels"]) == 8 and metrics["accuracy"] > 0.85
