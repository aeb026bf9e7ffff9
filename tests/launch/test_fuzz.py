"""Seeded fuzzing of config YAML and SHD files through ``spiketrain.launch.cli.main``.

Each case mutates a small valid config (values of the wrong type or range, missing or extra
keys, sections replaced, bytes of the YAML text flipped) or a small valid SHD file (fields
of the wrong dtype, shape, length or range; bytes flipped; truncated) and runs ``train`` in
this process. Every case must end with exit status 0 or 2 and never raise: a mistake is one
``error:`` line, never a traceback. The seed makes a failure reproducible.
"""
import contextlib
import io
import math
import random
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from spiketrain.data import make_synthetic_shd
from spiketrain.launch.cli import main

SEED = 20261201
N_CONFIG, N_SHD = 380, 160

BASE = textwrap.dedent("""
    model: {name: rsnn, hidden: 4, dt: 20.0, readout: mean, surrogate: superspike}
    data: {kind: synthetic, T: 5, dt: 0.05, n_in: 6, n_classes: 2, n_train: 8, n_test: 4,
           band_width: 2, cache_dir: CACHE}
    strategy: bptt
    trainer: {epochs: 1, batch_size: 4, lr: 0.01, progress: false, threads: 1}
""")

VALUES = [-1, 0, 1, 2, 0.5, -0.5, math.nan, math.inf, -math.inf, "", "x", "os:system",
          "collections:OrderedDict", None, True, False, [], {}, [1], {"a": 1}, "1GiB", 1e-12,
          "3", "-2", "nan", {"device": "1KiB"}, {"device": -1}]
FLOAT_VALUES = [1e300, 1e37, 1e-300, -1e300]
FLOAT_KEYS = {"trainer.lr", "trainer.clip_grad", "trainer.weight_decay", "data.dt", "model.dt",
              "data.noise_rate", "data.signal_rate", "data.jitter", "data.event_width"}
EXTRA_KEYS = ["model.neuron", "model.n_in", "model.n_out", "model.class", "strategy.budget",
              "strategy.segment", "strategy.name", "task", "task.class", "trainer.on_nonfinite",
              "trainer.snapshot_every", "trainer.optimizer", "hardware", "data.kind",
              "data.path", "data.sparse", "data.max_samples", "unknown", "trainer.bogus"]


def _paths(d, prefix=""):
    out = []
    for k, v in d.items():
        out.append(f"{prefix}{k}")
        if isinstance(v, dict):
            out += _paths(v, f"{prefix}{k}.")
    return out


def _set(d, path, value):
    parts = path.split(".")
    node = d
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {} if not isinstance(node.get(p), str) else {"name": node[p]}
        node = node[p]
    node[parts[-1]] = value


def _delete(d, path):
    parts = path.split(".")
    node = d
    for p in parts[:-1]:
        node = node.get(p)
        if not isinstance(node, dict):
            return
    node.pop(parts[-1], None)


def mutate_config(rng: random.Random, base: dict, shd_path: str) -> str:
    """YAML text of ``base`` after 1-3 random mutations."""
    d = yaml.safe_load(yaml.safe_dump(base))
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        keys = _paths(d)
        if kind < 0.45:                                   # a value of the wrong type or range
            key = rng.choice(keys)
            pool = VALUES + (FLOAT_VALUES if key in FLOAT_KEYS else [])
            _set(d, key, rng.choice(pool))
        elif kind < 0.65:                                 # a key that may or may not exist
            key = rng.choice(EXTRA_KEYS)
            value = rng.choice(VALUES + ["shd", shd_path, "skip_batch", "sgd", "checkpoint",
                                         "eprop", "auto", "cpu"])
            _set(d, key, value)
        elif kind < 0.8:                                  # a key or a section removed
            _delete(d, rng.choice(keys))
        elif kind < 0.9:                                  # a section replaced by a scalar
            d[rng.choice(list(d) or ["model"])] = rng.choice(VALUES)
        else:                                             # bytes of the text flipped
            text = yaml.safe_dump(d)
            chars = list(text)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(chars))
                chars[i] = rng.choice(list(":{}[]-,#&*!|>'\"%@` \n\t") + [chr(rng.randrange(32, 127))])
            return "".join(chars)
    return yaml.safe_dump(d)


def write_mutated_shd(rng: random.Random, path: Path, good: Path) -> None:
    """A damaged copy of the small SHD file ``good`` at ``path``."""
    kind = rng.random()
    if kind < 0.3:                                        # bytes flipped or file cut
        data = bytearray(good.read_bytes())
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        return
    with h5py.File(good, "r") as f:
        times = [np.asarray(t, np.float64) for t in f["spikes/times"][:]]
        units = [np.asarray(u, np.int64) for u in f["spikes/units"][:]]
        labels = np.asarray(f["labels"][:], np.int64)
    n = len(labels)
    t_dtype, u_dtype, l_data = np.float32, np.uint16, labels
    skip = set()
    for _ in range(rng.randint(1, 3)):
        m = rng.randrange(11)
        i = rng.randrange(n)
        if m == 0 and len(units[i]):
            units[i][rng.randrange(len(units[i]))] = rng.choice([-1, -300, 6, 700, 2**15])
            u_dtype = np.int32
        elif m == 1 and len(times[i]):
            times[i][rng.randrange(len(times[i]))] = rng.choice(
                [math.nan, math.inf, -math.inf, -1.0, 1e30, -1e30, 5e-324])
        elif m == 2:
            l_data = labels[: rng.randrange(n)]
        elif m == 3:
            l_data = labels.astype(np.float64) + rng.choice([0.0, 0.5])
        elif m == 4:
            l_data = np.stack([labels, labels], 1)
        elif m == 5:
            l_data = labels.copy()
            l_data[i] = rng.choice([-1, 2, 99])
        elif m == 6:
            times[i] = times[i][: max(0, len(times[i]) - 1)]
        elif m == 7:
            skip.add(rng.choice(["spikes/times", "spikes/units", "labels"]))
        elif m == 8:
            u_dtype = rng.choice([np.float32, np.int8, np.uint8])
        elif m == 9:
            times, units, l_data = [], [], labels[:0]
            break
        else:
            l_data = np.array([b"a"] * n)
    with h5py.File(path, "w") as f:
        if "spikes/times" not in skip:
            ds = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(t_dtype))
            for k, t in enumerate(times):
                ds[k] = np.asarray(t).astype(t_dtype)
        if "spikes/units" not in skip:
            ds = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(u_dtype))
            for k, u in enumerate(units):
                with np.errstate(all="ignore"):
                    ds[k] = np.asarray(u).astype(u_dtype)
        if "labels" not in skip:
            f.create_dataset("labels", data=l_data)


def _call(argv):
    """``main(argv)`` -> ``(status, stderr)``; any exception other than SystemExit propagates."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            status = main(argv)
        except SystemExit as e:           # argparse
            status = e.code if isinstance(e.code, int) else 2
    return status, err.getvalue()


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    base = yaml.safe_load(BASE.replace("CACHE", str(d / "cache")))
    good = Path(make_synthetic_shd(d / "good.h5", n_samples=8, n_classes=2, n_in=6,
                                   duration_s=0.25, seed=0, band_width=2))
    return d, base, good


def _check(status, err, what):
    assert status in (0, 2), f"{what}: exit {status}\n{err}"
    assert "Traceback" not in err, f"{what}:\n{err}"
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert status == 0 or len(lines) == 1, f"{what}: {err}"


def test_fuzz_config_yaml(fuzz_world, monkeypatch):
    d, base, good = fuzz_world
    monkeypatch.chdir(d)              # a mutated config may fall back to relative default paths
    rng = random.Random(SEED)
    statuses = []
    for i in range(N_CONFIG):
        text = mutate_config(rng, base, str(good))
        p = d / f"c{i}.yaml"
        p.write_text(text)
        try:
            status, err = _call(["train", str(p), "--out", str(d / f"run-c{i}")])
        except Exception as e:
            pytest.fail(f"case {i} (seed {SEED}) raised {type(e).__name__}: {e}\n{text}")
        _check(status, err, f"case {i} (seed {SEED})\n{text}")
        statuses.append(status)
    # the mutator reaches both outcomes: refused configs and ones that train
    assert statuses.count(2) > N_CONFIG // 3 and statuses.count(0) > 10


def test_fuzz_shd_files(fuzz_world, monkeypatch):
    d, base, good = fuzz_world
    monkeypatch.chdir(d)
    rng = random.Random(SEED + 1)
    cfg = dict(base)
    cfg["data"] = dict(base["data"], kind="shd", path=str(d / "m.h5"), n_classes=2)
    p = d / "shd.yaml"
    p.write_text(yaml.safe_dump(cfg))
    statuses = []
    for i in range(N_SHD):
        write_mutated_shd(rng, d / "m.h5", good)
        try:
            status, err = _call(["train", str(p), "--out", str(d / f"run-s{i}")])
        except Exception as e:
            pytest.fail(f"SHD case {i} (seed {SEED + 1}) raised {type(e).__name__}: {e}")
        _check(status, err, f"SHD case {i} (seed {SEED + 1})")
        statuses.append(status)
    assert statuses.count(2) > N_SHD // 3 and statuses.count(0) > 5
