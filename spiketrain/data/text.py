"""Byte-level language-modelling data: ``data.kind: text``.

Tokens are the bytes of UTF-8 text (vocabulary 256, no tokenizer, nothing downloaded). The
corpus is one or more text files (or folders of them), or, by default, the reference topics
of the Python documentation that ship inside every CPython install (``pydoc_data.topics``:
about 460 KB of English prose and grammar on the language, PSF License Version 2, the licence
of Python and its documentation; the text differs slightly between Python versions).

The corpus bytes are split once, before windowing: the first ``1 - test_fraction`` go to
training, the rest to testing, so no test byte is ever seen in training. A sample is a window
of ``T + 1`` bytes starting every ``stride`` bytes; its inputs are the first ``T`` bytes and
its targets the next ``T`` (``y[t] = x[t + 1]``). Batches are time-major:
``x [T, B]`` int64 tokens and ``y [T, B]`` int64 next tokens.
"""
from __future__ import annotations

import glob as _glob
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .kinds import register_data_kind

VOCAB_SIZE = 256
DEFAULT_CORPUS = "python-docs"
DEFAULT_CORPUS_LICENCE = ("Python documentation topics (pydoc_data.topics), PSF License "
                          "Version 2; see LICENSE.txt of the Python install")


def default_corpus() -> bytes:
    """The default corpus: the Python reference topics shipped with CPython, UTF-8 bytes.

    Topics are joined in sorted key order, separated by a blank line, so the corpus is the
    same on every run of one Python version.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)).encode("utf-8")


def _files(path: str, pattern: str) -> list[Path]:
    p = Path(os.path.expanduser(path))
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(Path(f) for f in _glob.glob(str(p / pattern), recursive=True)
                       if os.path.isfile(f))
        if not found:
            raise ValueError(f"data.path: folder {path!r} has no files matching {pattern!r}; "
                             f"set data.glob (e.g. '**/*.md')")
        return found
    raise ValueError(f"data.path: {path!r} not found; give a text file or a folder of them "
                     f"(or leave data.path empty for the default corpus)")


def read_corpus(paths: Union[str, list, None] = None, pattern: str = "**/*.txt",
                max_bytes: int = 0) -> bytes:
    """The corpus bytes: files (or folders, searched with ``pattern``) concatenated in the
    order given (folders sorted), separated by a newline; ``None``: :func:`default_corpus`.
    ``max_bytes > 0`` keeps only the first ``max_bytes``."""
    if paths is None or paths == DEFAULT_CORPUS:
        data = default_corpus()
    else:
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        parts = []
        for item in items:
            if str(item) == DEFAULT_CORPUS:
                parts.append(default_corpus())
            else:
                parts.extend(f.read_bytes() for f in _files(str(item), pattern))
        data = b"\n".join(parts)
    return data[:max_bytes] if max_bytes else data


class TextDataset:
    """Windows of a byte sequence: sample ``i`` is ``(x [T], y [T])`` int64 with
    ``y[t] = x[t + 1]``.

    Args:
        data: the bytes (``bytes`` or a uint8 array / tensor).
        T: tokens per sample.
        stride: bytes between the starts of consecutive windows (``T``: no overlap).
        n_samples: keep this many windows (0: all), drawn without replacement with ``seed``
            and kept in corpus order.
    """

    vocab_size = VOCAB_SIZE
    n_classes = VOCAB_SIZE

    def __init__(self, data, T: int, stride: int | None = None, n_samples: int = 0,
                 seed: int = 0):
        if isinstance(data, (bytes, bytearray)):
            arr = np.frombuffer(bytes(data), dtype=np.uint8)
        else:
            arr = np.asarray(data, dtype=np.uint8)
        self.tokens = torch.from_numpy(arr.astype(np.int64))
        self.T, self.stride = int(T), int(stride or T)
        if self.T <= 0 or self.stride <= 0:
            raise ValueError(f"T and stride must be positive, got T={T}, stride={stride}")
        n_windows = (len(arr) - (self.T + 1)) // self.stride + 1 if len(arr) > self.T else 0
        if n_windows <= 0:
            raise ValueError(f"data.T: a sample needs T + 1 = {self.T + 1} bytes but this split "
                             f"has only {len(arr)}; use a smaller T or more text")
        starts = np.arange(n_windows, dtype=np.int64) * self.stride
        if n_samples and n_samples < n_windows:
            pick = np.random.default_rng(seed).choice(n_windows, size=n_samples, replace=False)
            starts = starts[np.sort(pick)]
        self.starts = torch.from_numpy(starts)

    def __len__(self) -> int:
        return int(self.starts.numel())

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        s = int(self.starts[i])
        w = self.tokens[s:s + self.T + 1]
        return w[:-1], w[1:]

    def get_batch(self, indices, sparse: bool = False) -> tuple[Tensor, Tensor]:
        """``(x [T, B], y [T, B])`` int64 for the given sample indices (time-major)."""
        if sparse:
            raise ValueError("data.sparse: text tokens are integer ids, not spikes; "
                             "set data.sparse: false")
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        offsets = torch.arange(self.T + 1)
        w = self.tokens[self.starts[idx].unsqueeze(0) + offsets.unsqueeze(1)]   # [T + 1, B]
        return w[:-1].contiguous(), w[1:].contiguous()

    def text(self, i: int) -> str:
        """Sample ``i``'s input bytes decoded as UTF-8 (invalid bytes replaced), for display."""
        return bytes(self[i][0].to(torch.uint8).tolist()).decode("utf-8", errors="replace")


@dataclass
class TextDataConfig:
    """``data:`` section of ``kind: text``."""

    kind: str = "text"
    path: Optional[Union[str, list]] = None   # text file(s)/folder(s); null: default corpus
    glob: str = "**/*.txt"           # files taken from a folder in data.path
    T: int = 256                     # tokens (bytes) per sample
    stride: int = 0                  # bytes between sample starts (0: T, no overlap)
    test_fraction: float = 0.1       # tail of the corpus held out for testing (0: no test set)
    n_train: int = 0                 # train samples (0: every window)
    n_test: int = 0                  # test samples (0: every window)
    max_bytes: int = 0               # use only the first max_bytes of the corpus (0: all)
    seed: int = 0                    # which windows n_train / n_test keep

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TextDataConfig":
        """Check values; raise ``ValueError('data.<key>: ...')`` on the first bad one."""
        def bad(key, msg):
            raise ValueError(f"data.{key}: {msg}")

        if self.kind != "text":
            bad("kind", f"TextDataConfig is for kind 'text', got {self.kind!r}")
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T <= 0:
            bad("T", f"must be a positive integer, got {self.T!r}")
        for key in ("stride", "n_train", "n_test", "max_bytes", "seed"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(key, f"must be an integer >= 0, got {v!r}")
        f = self.test_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            bad("test_fraction", f"must be a number in [0, 1), got {f!r}")
        paths = [self.path] if isinstance(self.path, str) else (self.path or [])
        for p in paths:
            if not isinstance(p, str):
                bad("path", f"must be a path or a list of paths, got {p!r}")
            if p != DEFAULT_CORPUS and not Path(os.path.expanduser(p)).exists():
                bad("path", f"{p!r} not found; give a text file or folder (or leave data.path "
                            f"empty for the default corpus, the Python documentation topics)")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def split_corpus(data: bytes, test_fraction: float) -> tuple[bytes, bytes]:
    """``(train, test)`` bytes: the head and the last ``test_fraction`` of ``data``."""
    n_test = int(round(len(data) * float(test_fraction)))
    return data[:len(data) - n_test], data[len(data) - n_test:]


def build_text_datasets(cfg: TextDataConfig) -> tuple[TextDataset, TextDataset | None]:
    """``(train_ds, test_ds)`` of ``cfg`` (``test_ds`` None when ``test_fraction`` is 0)."""
    if isinstance(cfg, dict):
        cfg = TextDataConfig(**cfg)
    cfg.validate()
    data = read_corpus(cfg.path, cfg.glob, cfg.max_bytes)
    train_bytes, test_bytes = split_corpus(data, cfg.test_fraction)
    stride = cfg.stride or cfg.T
    train = TextDataset(train_bytes, cfg.T, stride, cfg.n_train, cfg.seed)
    test = None
    if cfg.test_fraction > 0:
        test = TextDataset(test_bytes, cfg.T, stride, cfg.n_test, cfg.seed + 1)
    return train, test


register_data_kind("text", TextDataConfig, build_text_datasets, task="language_model")

__all__ = ["DEFAULT_CORPUS", "DEFAULT_CORPUS_LICENCE", "TextDataConfig", "TextDataset",
           "VOCAB_SIZE", "build_text_datasets", "default_corpus", "read_corpus", "split_corpus"]
