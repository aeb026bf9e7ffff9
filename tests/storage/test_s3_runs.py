"""RunStorage on a local folder and on a real S3 endpoint (moto): write, read, list, exists,
atomic replace, and the stage folder of a URI."""
from __future__ import annotations

import pytest

from spiketrain.trainer.storage import (RunStorage, StorageError, display, fetch_run, is_uri,
                                        join, stage_dir)


def test_uri_detection_and_join():
    assert is_uri("s3://b/runs/x") and is_uri("gs://b/x") and is_uri("hdfs://nn:8020/x")
    assert not is_uri("runs/x") and not is_uri("/abs/x") and not is_uri(None)
    assert join("s3://b/r?endpoint_override=http://h:1", "snapshot.pt") == \
        "s3://b/r/snapshot.pt?endpoint_override=http://h:1"
    assert display("s3://b/r?endpoint_override=x") == "s3://b/r"
    assert stage_dir("s3://b/runs/exp1") == stage_dir("s3://b/runs/exp1")
    assert stage_dir("s3://b/runs/exp1") != stage_dir("s3://c/runs/exp1")
    assert stage_dir("s3://b/runs/exp1").name.startswith("exp1-")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_write_read_list_exists(where, tmp_path, request):
    if where == "s3":
        loc = f"s3://{request.getfixturevalue('bucket')}/runs/exp1"
    else:
        loc = str(tmp_path / "runs" / "exp1")
    st = RunStorage(loc)
    assert not st.exists("metrics.parquet")
    assert st.write_bytes("metrics.parquet", b"one") == f"{display(loc)}/metrics.parquet"
    st.write_bytes("metrics.parquet", b"two")           # replaced, not appended
    st.write_bytes("ray/checkpoint_000/snapshot.pt", b"\x00" * 1000)
    assert st.read_bytes("metrics.parquet") == b"two"
    assert st.exists("metrics.parquet") and st.exists("ray")
    assert st.list() == ["metrics.parquet"]
    assert st.list(recursive=True) == ["metrics.parquet", "ray/checkpoint_000/snapshot.pt"]
    if where == "local":   # no temp file left behind by the atomic write
        assert sorted(p.name for p in (tmp_path / "runs" / "exp1").iterdir()) == \
            ["metrics.parquet", "ray"]
    with pytest.raises(FileNotFoundError, match="snapshot.pt does not exist"):
        st.read_bytes("snapshot.pt")
    src = tmp_path / "local.bin"
    src.write_bytes(b"abc" * 7)
    st.upload(src, "snapshot.pt")
    st.download("snapshot.pt", tmp_path / "back" / "snapshot.pt")
    assert (tmp_path / "back" / "snapshot.pt").read_bytes() == b"abc" * 7
    st.delete("snapshot.pt")
    assert not st.exists("snapshot.pt")


def test_fetch_run_copies_run_files(bucket, tmp_path):
    loc = f"s3://{bucket}/runs/exp2"
    st = RunStorage(loc)
    st.write_bytes("config.yaml", b"trainer: {epochs: 1}\n")
    st.write_bytes("metrics.parquet", b"PAR1")
    dest = fetch_run(loc, tmp_path / "stage")
    assert sorted(p.name for p in dest.iterdir()) == ["config.yaml", "metrics.parquet"]
    with pytest.raises(FileNotFoundError, match="no run there"):
        fetch_run(f"s3://{bucket}/runs/none", tmp_path / "stage2")


def test_unreachable_bucket_is_one_line(s3_env):
    st = RunStorage("s3://no-such-bucket-xyz/runs/a")
    with pytest.raises(StorageError, match="s3://no-such-bucket-xyz/runs/a/x: cannot write"):
        st.write_bytes("x", b"1")


def test_localize_file(bucket, tmp_path, monkeypatch):
    from spiketrain.trainer.storage import localize_file
    monkeypatch.setenv("SPIKETRAIN_STAGE_DIR", str(tmp_path / "stage"))
    loc = f"s3://{bucket}/runs/exp3"
    RunStorage(loc).write_bytes("snapshot.pt", b"weights")
    for where in (loc, loc + "/snapshot.pt"):
        p = localize_file(where, "snapshot.pt")
        assert p.read_bytes() == b"weights" and p.parent == stage_dir(loc)
    assert localize_file(str(tmp_path / "run"), "snapshot.pt") == tmp_path / "run" / "snapshot.pt"
