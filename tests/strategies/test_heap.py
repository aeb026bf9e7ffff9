"""Heap trimming on long unrolls: trims only after the RSS grew by the slack."""
from spiketrain.strategies import heap


def test_trimmer_trims_after_growth(monkeypatch):
    rss, calls = [1000], []
    monkeypatch.setattr(heap, "rss_bytes", lambda: rss[0])
    monkeypatch.setattr(heap, "trim", lambda: calls.append(rss[0]))
    t = heap.Trimmer(slack=100, every=0)
    t.active, t.mark = True, 1000
    rss[0] = 1090
    t()
    assert calls == []  # grew less than the slack
    rss[0] = 1150
    t()
    assert calls == [1150] and t.trims == 1 and t.mark == 1150
    rss[0] = 900
    t()
    assert t.mark == 900 and len(calls) == 1  # the mark follows the RSS down
    rss[0] = 1001
    t()
    assert len(calls) == 2


def test_rss_and_trim_run_here():
    assert heap.rss_bytes() > 0
    heap.trim()  # glibc malloc_trim (a no-op elsewhere)
