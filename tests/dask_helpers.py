"""A local Dask cluster for the batch tests (imported only by modules that skip without
``distributed``)."""

from __future__ import annotations

import contextlib
import logging

import distributed


@contextlib.contextmanager
def local_client(workers: int):
    """A client of a local cluster of ``workers`` single-threaded worker processes, torch
    and the engine imported in each."""
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    client.run(exec, "import torch, napari_dip.api, napari_dip.drivers, napari_dip.batch_task")
    try:
        yield client
    finally:
        client.close()
        cluster.close()
