"""One real local Ray for the whole Ray test module set (starting Ray costs seconds), and a
helper that runs a Ray job in a thread without ever leaving it behind."""
import os
import threading

import pytest

ray = pytest.importorskip("ray")      # the Ray extra: pip install -e '.[ray]'

INIT = dict(num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray started for the tests and always shut down after them."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(**INIT)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


class Background:
    """``fn()`` in a daemon thread. :meth:`result` waits up to ``timeout`` seconds; if the
    thread is still running then, Ray is shut down (its workers end and free the CPUs, so
    the thread fails fast instead of stalling later tests), restarted for the next tests,
    and the test fails."""

    def __init__(self, fn):
        self.box: dict = {}
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.box["result"] = fn()
        except BaseException as e:  # noqa: BLE001  (re-raised in the test's thread)
            self.box["error"] = e

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def result(self, timeout: float):
        self.thread.join(timeout)
        if self.thread.is_alive():
            ray.shutdown()
            self.thread.join(120)
            ray.init(**INIT)
            pytest.fail(f"the Ray run did not end within {timeout:g} s; Ray was shut down "
                        f"and restarted (thread still alive: {self.thread.is_alive()})")
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


@pytest.fixture
def background():
    """``background(fn) -> Background``: run a Ray job in a thread that is never left behind."""
    return Background
