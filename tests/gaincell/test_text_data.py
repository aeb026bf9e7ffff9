"""Byte-level text data: splits, windows, next-token alignment, loader batches, the kind."""
import numpy as np
import pytest
import torch

from spiketrain.data import SpikeLoader
from spiketrain.data.kinds import get_data_kind
from spiketrain.data.text import (TextDataConfig, TextDataset, build_text_datasets,
                                  default_corpus, read_corpus, split_corpus)


def test_default_corpus_is_offline_text_and_deterministic():
    a, b = default_corpus(), default_corpus()
    assert a == b and len(a) > 200_000
    text = a.decode("utf-8")
    assert "assert" in text and "statement" in text


def test_windows_and_next_token_alignment():
    data = bytes(range(200)) * 3
    ds = TextDataset(data, T=16, stride=10)
    assert len(ds) == (600 - 17) // 10 + 1
    arr = np.frombuffer(data, np.uint8)
    for i in (0, 7, len(ds) - 1):
        x, y = ds[i]
        s = 10 * i
        assert x.dtype == torch.int64 and x.shape == (16,)
        assert x.tolist() == arr[s:s + 16].tolist()
        assert y.tolist() == arr[s + 1:s + 17].tolist()
        assert torch.equal(x[1:], y[:-1])          # y[t] is the byte after x[t]
    idx = np.array([3, 0, 5])
    xb, yb = ds.get_batch(idx)
    assert xb.shape == yb.shape == (16, 3) and xb.dtype == yb.dtype == torch.int64
    for j, i in enumerate(idx):                      # time-major, column j is sample idx[j]
        assert torch.equal(xb[:, j], ds[int(i)][0]) and torch.equal(yb[:, j], ds[int(i)][1])


def test_subsample_is_seeded_and_in_corpus_order():
    data = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    a, b = TextDataset(data, 32, 8, n_samples=20, seed=3), TextDataset(data, 32, 8, 20, seed=3)
    c = TextDataset(data, 32, 8, n_samples=20, seed=4)
    assert len(a) == 20 and torch.equal(a.starts, b.starts) and not torch.equal(a.starts, c.starts)
    assert bool((a.starts[1:] > a.starts[:-1]).all())


def test_split_holds_out_the_tail(tmp_path):
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(400)).encode()
    (tmp_path / "a.txt").write_bytes(text)
    cfg = TextDataConfig(path=str(tmp_path / "a.txt"), T=20, test_fraction=0.25)
    train, test = build_text_datasets(cfg)
    head, tail = split_corpus(text, 0.25)
    assert head + tail == text and len(tail) == round(0.25 * len(text))
    # every train window lies in the head, every test window in the tail
    assert int(train.starts.max()) + 21 <= len(head)
    x, _ = test[0]
    assert bytes(x.to(torch.uint8).tolist()) == tail[:20]
    assert build_text_datasets(TextDataConfig(path=str(tmp_path), T=20, test_fraction=0))[1] is None


def test_folder_glob_and_multiple_paths(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("bbb")
    (tmp_path / "d" / "a.txt").write_text("aaa")
    (tmp_path / "d" / "skip.md").write_text("mmm")
    (tmp_path / "c.txt").write_text("ccc")
    assert read_corpus(str(tmp_path / "d")) == b"aaa\nbbb"
    assert read_corpus([str(tmp_path / "c.txt"), str(tmp_path / "d")]) == b"ccc\naaa\nbbb"
    assert read_corpus(str(tmp_path / "d"), pattern="*.md") == b"mmm"
    assert read_corpus(None, max_bytes=10) == default_corpus()[:10]


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="data.path"):
        TextDataConfig(path=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="data.test_fraction"):
        TextDataConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="data.T"):
        TextDataConfig(T=0)
    (tmp_path / "tiny.txt").write_text("short")
    with pytest.raises(ValueError, match="data.T"):
        build_text_datasets(TextDataConfig(path=str(tmp_path / "tiny.txt"), T=64,
                                           test_fraction=0))


def test_registered_kind_and_loader_batches():
    kind = get_data_kind("text")
    assert kind.config is TextDataConfig and kind.task == "language_model"
    train, test = kind.build(kind.config(T=32, max_bytes=20_000, test_fraction=0.2))
    assert train.vocab_size == 256
    loader = SpikeLoader(train, batch_size=4, seed=0)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (32, 4) and x.dtype == torch.int64
    assert torch.equal(x[1:], y[:-1])
    assert int(x.max()) < 256 and int(x.min()) >= 0
    with pytest.raises(ValueError, match="sparse"):
        train.get_batch([0], sparse=True)
