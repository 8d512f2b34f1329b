"""Running on a Dask cluster: per-image work through joblib's Dask backend, XGBoost through xgboost.dask.

``--scheduler tcp://host:8786`` (or ``$DASK_SCHEDULER_ADDRESS``) connects to an existing cluster;
``--scheduler local`` starts a :class:`distributed.LocalCluster` on this machine. Workers must be able
to import bloodcli and read the images and the cache directory at the same paths (shared storage).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

from bloodcli.errors import ResourceUnavailableError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
#: Dask sets MALLOC_TRIM_THRESHOLD_=64 KiB in workers, so glibc hands back every image-sized buffer and
#: maps it again for the next image: extraction ran at half speed. Local workers get a larger threshold.
WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 128 * 1024 * 1024}


def resolve_scheduler(address: str | None) -> str | None:
    """The scheduler to use: the option, else ``$DASK_SCHEDULER_ADDRESS``, else None (no Dask)."""
    return address or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def dask_client(address: str, n_workers: int | None = None) -> Iterator:
    """A connected :class:`distributed.Client`; ``"local"`` starts (and later stops) a LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if address == "local":
        workers = n_workers or len(os.sched_getaffinity(0))
        with dask.config.set(WORKER_ENVIRONMENT):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ResourceUnavailableError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        yield client


@contextlib.contextmanager
def compute_backend(address: str | None, n_workers: int | None = None) -> Iterator:
    """Route joblib parallelism to Dask while active; a no-op (yields None) without a scheduler."""
    address = resolve_scheduler(address)
    if address is None:
        yield None
        return
    import joblib

    with dask_client(address, n_workers) as client, joblib.parallel_config(backend="dask"):
        yield client


def fit_xgboost_on_dask(client, values: np.ndarray, targets: np.ndarray, estimator):
    """Fit ``estimator``'s XGBoost configuration with xgboost.dask and return a plain XGBClassifier.

    The data are split into one partition per worker; the returned classifier holds the booster
    trained on the cluster and predicts locally like any other model.
    """
    import dask.array as da
    from xgboost import XGBClassifier
    from xgboost import dask as dxgb

    workers = max(1, len(client.scheduler_info()["workers"]))
    rows = max(1, -(-len(values) // workers))
    features = da.from_array(values, chunks=(rows, values.shape[1]))
    labels = da.from_array(targets, chunks=(rows,))
    params = estimator.get_params()
    params.pop("n_jobs", None)
    distributed_model = dxgb.DaskXGBClassifier(**params)
    distributed_model.client = client
    distributed_model.fit(features, labels)
    local = XGBClassifier(**estimator.get_params())
    local.load_model(bytearray(distributed_model.get_booster().save_raw("json")))
    return local
