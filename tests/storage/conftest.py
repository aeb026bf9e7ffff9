"""A real S3-compatible endpoint for the storage tests: moto's threaded server on 127.0.0.1
(nothing leaves the machine), pointed at through the standard AWS variables."""
from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def s3_endpoint():
    """``http://127.0.0.1:PORT`` of a running moto S3 server (skips without ``moto[server]``)."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is a test extra: "
                                     "pip install -e '.[dev]'")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The AWS variables pointing pyarrow (and any subprocess) at the moto endpoint."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def bucket(s3_env):
    """A fresh, empty bucket name on the endpoint."""
    import pyarrow.fs as pafs

    name = f"runs-{uuid.uuid4().hex[:10]}"
    fs = pafs.S3FileSystem(allow_bucket_creation=True,
                           endpoint_override=os.environ["AWS_ENDPOINT_URL"],
                           access_key="testing", secret_key="testing", region="us-east-1")
    fs.create_dir(name)
    return name
