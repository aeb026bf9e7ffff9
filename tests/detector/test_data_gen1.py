"""Gen1 file formats: exact round trips, header parsing, windowed reads under a memory budget."""
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from spiketrain.data.gen1_format import (BBOX_DTYPE, BBOX_DTYPE_LEGACY, EVENT_DTYPE, DatFile,
                                         append_dat, pack_xyp, read_bbox, read_dat_header,
                                         unpack_xyp, write_bbox, write_dat)


def random_events(n, seed=0, width=304, height=240, t_max=2_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)


def random_boxes(n, seed=0):
    rng = np.random.default_rng(seed)
    b = np.zeros(n, dtype=BBOX_DTYPE)
    b["t"] = np.sort(rng.integers(0, 10**7, n))
    for k in ("x", "y", "w", "h"):
        b[k] = rng.uniform(0, 200, n).astype(np.float32)
    b["class_id"] = rng.integers(0, 2, n)
    b["track_id"] = rng.integers(0, 50, n)
    b["class_confidence"] = rng.uniform(0, 1, n).astype(np.float32)
    return b


@pytest.mark.parametrize("header", [True, False])
def test_dat_round_trip_exact(tmp_path, header):
    t, x, y, p = random_events(5000, seed=1)
    x[0], y[0] = 16383, 16383          # the extreme 14-bit coordinates survive packing
    path = write_dat(tmp_path / "rec_td.dat", t, x, y, p, header=header, width=304, height=240)
    h = read_dat_header(path)
    if header:
        assert (h.width, h.height) == (304, 240)
        assert any(line.startswith("Version") for line in h.lines)
        assert h.data_offset == sum(len(f"% {s}\n") for s in h.lines) + 2
    else:
        assert h.data_offset == 0 and h.lines == [] and h.width is None
    assert os.path.getsize(path) == h.data_offset + 8 * len(t)
    f = DatFile(path)
    rt, rx, ry, rp = f.read_all()
    np.testing.assert_array_equal(rt, t)
    np.testing.assert_array_equal(rx, x)
    np.testing.assert_array_equal(ry, y)
    np.testing.assert_array_equal(rp, p)
    # the bytes are the published layout: uint32 t, then x | y << 14 | p << 28
    raw = np.fromfile(path, dtype="<u4", offset=h.data_offset).reshape(-1, 2)
    np.testing.assert_array_equal(raw[:, 0], t)
    np.testing.assert_array_equal(raw[:, 1], x | (y << 14) | (p << 28))


def test_pack_unpack_and_range_checks():
    x, y, p = unpack_xyp(pack_xyp([0, 5, 16383], [16383, 7, 0], [1, 0, 1]))
    assert x.tolist() == [0, 5, 16383] and y.tolist() == [16383, 7, 0] and p.tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        pack_xyp([16384], [0], [0])
    with pytest.raises(ValueError):
        pack_xyp([0], [0], [2])


def test_window_reads_match_a_filter(tmp_path):
    t, x, y, p = random_events(20000, seed=2)
    f = DatFile(write_dat(tmp_path / "a_td.dat", t, x, y, p))
    for t0, t1 in [(0, 1), (123_456, 654_321), (1_999_000, 5_000_000), (700_000, 700_000)]:
        wt, wx, _, _ = f.window(t0, t1)
        m = (t >= t0) & (t < t1)
        np.testing.assert_array_equal(wt, t[m])
        np.testing.assert_array_equal(wx, x[m])
    assert f.search(t[100]) == np.searchsorted(t, t[100])
    assert f.duration_us == t[-1] + 1


@pytest.mark.parametrize("legacy", [False, True])
def test_bbox_round_trip_both_spellings(tmp_path, legacy):
    boxes = random_boxes(300, seed=3)
    path = write_bbox(tmp_path / "rec_bbox.npy", boxes, legacy=legacy)
    on_disk = np.load(path)
    if legacy:
        assert on_disk.dtype == BBOX_DTYPE_LEGACY and "ts" in on_disk.dtype.names
        assert "confidence" in on_disk.dtype.names and "t" not in on_disk.dtype.names
    else:
        assert on_disk.dtype.itemsize == 40 and on_disk.dtype.names == BBOX_DTYPE.names
    back = read_bbox(path)
    assert back.dtype == BBOX_DTYPE
    for k in BBOX_DTYPE.names:
        np.testing.assert_array_equal(back[k], boxes[k], err_msg=k)


def test_bbox_reader_takes_foreign_field_order(tmp_path):
    """Older files: fields read by name, whatever their order and integer widths."""
    dt = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                   ("class_id", "u1"), ("confidence", "<f4"), ("track_id", "<u4")])
    a = np.zeros(2, dtype=dt)
    a["ts"], a["x"], a["class_id"], a["confidence"], a["track_id"] = [5, 9], [1.5, 2.5], [1, 0], \
        [0.25, 0.5], [7, 8]
    np.save(tmp_path / "old_bbox.npy", a)
    b = read_bbox(tmp_path / "old_bbox.npy")
    assert b["t"].tolist() == [5, 9] and b["class_confidence"].tolist() == [0.25, 0.5]
    assert b["class_id"].tolist() == [1, 0] and b["track_id"].tolist() == [7, 8]


def test_header_refuses_other_event_types(tmp_path):
    path = tmp_path / "x_td.dat"
    path.write_bytes(b"% Height 240\n% Width 304\n" + bytes([12, 8]) + bytes(16))
    with pytest.raises(ValueError, match="type 12"):
        DatFile(path)
    path.write_bytes(b"% Height 240\n" + bytes([0, 16]) + bytes(32))
    with pytest.raises(ValueError, match="size 16"):
        DatFile(path)


def write_big(path, n_chunks, chunk=1_000_000):
    """A long recording written chunk by chunk (never whole in memory)."""
    write_dat(path, [], [], [], [])
    for c in range(n_chunks):
        rng = np.random.default_rng(c)
        t = c * 1_000_000 + np.sort(rng.integers(0, 1_000_000, chunk))
        append_dat(path, t, rng.integers(0, 304, chunk), rng.integers(0, 240, chunk),
                   rng.integers(0, 2, chunk))
    return path


def test_windows_under_tracemalloc_budget(tmp_path):
    """Reading a 24 MB recording in 20 ms windows allocates far less than the file."""
    path = write_big(tmp_path / "big_td.dat", 3)
    f = DatFile(path)
    assert os.path.getsize(path) > 22 * 2**20
    tracemalloc.start()
    try:
        n, budget = 0, 4 * 2**20
        for t0 in range(0, 3_000_000, 20_000):
            n += len(f.window(t0, t0 + 20_000)[0])
        _, peak = tracemalloc.get_traced_memory()
        assert n == len(f) == 3_000_000
        assert peak < budget, f"windowed reads peaked at {peak} bytes"
        tracemalloc.reset_peak()
        f.read_all()                        # the measure does catch a whole-file load
        assert tracemalloc.get_traced_memory()[1] > 8 * 3_000_000
    finally:
        tracemalloc.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA semantics are Linux")
def test_recording_larger_than_memory_limit(tmp_path):
    """A child process whose heap may grow by only 24 MiB reads a 96 MB recording window by
    window (the file is mapped, not loaded), and fails to load it whole."""
    path = write_big(tmp_path / "huge_td.dat", 12)
    assert os.path.getsize(path) > 90 * 2**20
    code = textwrap.dedent(f"""
        import resource, numpy as np
        from spiketrain.data.gen1_format import DatFile
        def vmdata():
            for line in open('/proc/self/status'):
                if line.startswith('VmData'):
                    return int(line.split()[1]) * 1024
        f = DatFile({str(path)!r})
        f.window(0, 1)
        resource.setrlimit(resource.RLIMIT_DATA, (vmdata() + 24 * 2**20, resource.RLIM_INFINITY))
        n = 0
        for t0 in range(0, 12_000_000, 250_000):
            t, x, y, p = f.window(t0, t0 + 250_000)
            n += len(t)
        print("events", n)
        try:
            f.read_all()
            print("whole: loaded")
        except MemoryError:
            print("whole: MemoryError")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "events 12000000" in out.stdout
    assert "whole: MemoryError" in out.stdout


def test_event_record_is_8_bytes():
    assert EVENT_DTYPE.itemsize == 8 and BBOX_DTYPE.itemsize == 40


def test_lazy_map_close_and_pickle(tmp_path):
    import pickle
    t, x, y, p = random_events(50_000, seed=4)
    f = DatFile(write_dat(tmp_path / "p_td.dat", t, x, y, p))
    assert not f.is_open and len(f) == 50_000          # the header and size need no map
    first = f.window(0, 100_000)
    assert f.is_open
    blob = pickle.dumps(f)
    assert len(blob) < 10_000                          # the events are not pickled
    g = pickle.loads(blob)
    np.testing.assert_array_equal(g.window(0, 100_000)[0], first[0])
    f.close()
    assert not f.is_open
    np.testing.assert_array_equal(f.window(0, 100_000)[1], first[1])   # maps again


def test_pickled_file_opens_from_another_folder(tmp_path, monkeypatch):
    import pickle
    t, x, y, p = random_events(100, seed=5)
    monkeypatch.chdir(tmp_path)
    write_dat("rel_td.dat", t, x, y, p)
    blob = pickle.dumps(DatFile("rel_td.dat"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")          # a Ray worker's working folder
    np.testing.assert_array_equal(pickle.loads(blob).read_all()[0], t)
