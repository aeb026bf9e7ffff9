"""One real local Ray for the whole Ray test module set (starting Ray costs seconds)."""
import os

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray started for the tests and always shut down after them."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
