"""Dask: extraction and XGBoost training on a 2-worker LocalCluster give the local results."""

import numpy as np
import pytest
from conftest import SAMPLE

from bloodcli import api
from bloodcli.learn.model_file import train_model
from bloodcli.pipeline.parallel import compute_backend, resolve_scheduler


@pytest.fixture(scope="module")
def local_table():
    return api.featurize(SAMPLE / "pbc", "glcm,shape,color", options=api.ExecutionOptions(use_cache=False, jobs=1))


@pytest.fixture(scope="module")
def cluster_address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_extraction_on_the_cluster_equals_the_local_run(local_table, cluster_address, tmp_path):
    options = api.ExecutionOptions(cache_dir=tmp_path / "cache", scheduler=cluster_address)
    remote = api.featurize(SAMPLE / "pbc", "glcm,shape,color", options=options)
    np.testing.assert_array_equal(remote.values, local_table.values)
    assert [s.path for s in remote.samples] == [s.path for s in local_table.samples]
    assert remote.n_computed == 180  # the workers wrote the shared cache ...
    again = api.featurize(SAMPLE / "pbc", "glcm,shape,color", options=api.ExecutionOptions(cache_dir=tmp_path / "cache"))
    assert again.n_computed == 0  # ... which a local run then reuses


def test_xgboost_dask_model_predicts_like_the_local_model(local_table, cluster_address):
    local = train_model(local_table, "xgboost", seed=0, jobs=1)
    with compute_backend(cluster_address) as client:
        distributed = train_model(local_table, "xgboost", seed=0, client=client)
    assert type(distributed.estimator).__name__ == "XGBClassifier"
    np.testing.assert_allclose(distributed.predict_proba(local_table.values), local.predict_proba(local_table.values), atol=1e-5)


def test_random_forest_cross_validation_through_the_joblib_dask_backend(local_table, cluster_address):
    local, _ = api.train(local_table, "rf", cv=3, seed=0, options=api.ExecutionOptions(jobs=2))
    remote, _ = api.train(local_table, "rf", cv=3, seed=0, options=api.ExecutionOptions(jobs=2, scheduler=cluster_address))
    assert remote.metrics["accuracy"] == local.metrics["accuracy"]


def test_scheduler_from_environment(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.1:8786")
    assert resolve_scheduler(None) == "tcp://10.0.0.1:8786"
    assert resolve_scheduler("local") == "local"
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert resolve_scheduler(None) is None


def test_cli_extract_with_a_local_cluster(tmp_path, small_dataset):
    import json

    from typer.testing import CliRunner

    from bloodcli.cli import app

    out = tmp_path / "f.npz"
    result = CliRunner().invoke(app, ["extract", str(small_dataset), "-o", str(out), "--scheduler", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_samples"] == 12 and out.exists()


def test_segment_on_a_local_cluster_equals_the_local_run(tmp_path):
    from typer.testing import CliRunner

    from bloodcli.cli import app

    images = SAMPLE / "bccd" / "JPEGImages"
    local = CliRunner().invoke(app, ["segment", str(images), "-o", str(tmp_path / "local"), "-j", "1"])
    remote = CliRunner().invoke(app, ["segment", str(images), "-o", str(tmp_path / "dask"), "--scheduler", "local"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    for table in ("counts.csv", "objects.csv"):
        assert (tmp_path / "local" / table).read_text() == (tmp_path / "dask" / table).read_text()
