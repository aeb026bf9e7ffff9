"""A table of bad inputs through the real ``spiketrain`` command, each in its own process.

For every case: exit status 2, at most two lines on stderr, no "Traceback", no new folder
in the working directory or where ``--out`` pointed, and no file of an earlier run changed.
The cases in ``FRESH`` run as the installed ``spiketrain`` console script in a new
interpreter; the others run in processes forked, after the imports, from one interpreter that
imported the CLI once (``cli_forks.py``), so ~40 processes do not each pay the torch import.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from spiketrain.data import make_synthetic_shd
from spiketrain.launch.cli import main

from .conftest import TINY

BASE_MODEL = "model: {name: rsnn, hidden: 16, dt: 20.0, readout: mean, surrogate: superspike}"


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _write_shd(path, times, units, labels, u_dtype=np.int32):
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        t = g.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        u = g.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(u_dtype))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, np.float32)
            u[i] = np.asarray(ui, u_dtype)
        f.create_dataset("labels", data=np.asarray(labels))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files every case can point at: a finished earlier run, configs, SHD files, snapshots."""
    d = tmp_path_factory.mktemp("bad_inputs")
    cache = d / "cache"
    tiny = TINY.replace("CACHE", str(cache))
    w = {"dir": d, "cache": cache}
    w["cfg"] = d / "tiny.yaml"
    w["cfg"].write_text(textwrap.dedent(tiny))
    earlier = d / "earlier"
    assert main(["train", str(w["cfg"]), "--out", str(earlier)]) == 0   # also fills the cache
    w["earlier"] = earlier

    def cfg(name, text):
        p = d / name
        p.write_text(textwrap.dedent(text))
        return p

    w["evil_model"] = cfg("evil_model.yaml", tiny.replace(
        BASE_MODEL, "model: {class: 'os:system', command: 'touch PWNED'}"))
    w["not_model"] = cfg("not_model.yaml", tiny.replace(
        BASE_MODEL, "model: {class: 'collections:OrderedDict', hidden: 4}"))
    w["evil_strategy"] = cfg("evil_strategy.yaml", tiny.replace(
        "strategy: bptt", "strategy: {class: 'os:system', command: 'touch PWNED'}"))
    w["evil_task"] = cfg("evil_task.yaml", tiny + "task: {class: 'subprocess:Popen'}\n")
    w["bad_yaml"] = cfg("bad_yaml.yaml", "model: {name: rsnn\n")
    w["list_yaml"] = cfg("list_yaml.yaml", "- 1\n- 2\n")
    w["binary_yaml"] = d / "binary.yaml"
    w["binary_yaml"].write_bytes(b"\xff\xfe\x00garbage\x80")
    w["afile"] = d / "afile"
    w["afile"].write_text("not a folder")

    # SHD files: one good (matching TINY's sizes), several bad
    good = make_synthetic_shd(d / "good.h5", n_samples=12, n_classes=3, n_in=30,
                              duration_s=1.0, seed=0, band_width=4)
    w["good_h5"] = Path(good)
    raw = bytearray(Path(good).read_bytes())
    hdr = bytearray(raw)
    hdr[:8] = b"\0" * 8
    (d / "header.h5").write_bytes(bytes(hdr))
    (d / "trunc.h5").write_bytes(bytes(raw[: len(raw) // 3]))
    (d / "text.h5").write_text("time,unit\n0.1,3\n")
    T2 = [[0.0, 0.1], [0.2]]
    _write_shd(d / "neg_units.h5", T2, [[1, -4], [2]], [0, 1])
    _write_shd(d / "big_units.h5", T2, [[1, 40], [2]], [0, 1])
    _write_shd(d / "few_labels.h5", T2, [[1, 2], [2]], [0])
    _write_shd(d / "float_labels.h5", T2, [[1, 2], [2]], [0.0, 1.5])
    _write_shd(d / "labels_2d.h5", T2, [[1, 2], [2]], [[0, 1], [1, 0]])
    _write_shd(d / "len_mismatch.h5", [[0.0], [0.2]], [[1, 2], [2]], [0, 1])
    with h5py.File(d / "no_times.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.int64))

    # damaged copies of the earlier run's snapshot (each in a run folder of its own)
    snap = (earlier / "snapshot.pt").read_bytes()
    for name, data in [("snap_trunc", snap[: len(snap) // 2]), ("snap_empty", b""),
                       ("snap_garbage", os.urandom(4096))]:
        r = d / name
        r.mkdir()
        shutil.copy(earlier / "config.yaml", r / "config.yaml")
        (r / "snapshot.pt").write_bytes(data)
    evil = d / "snap_evil"
    evil.mkdir()
    shutil.copy(earlier / "config.yaml", evil / "config.yaml")
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    import torch
    torch.save({"model": Boom()}, evil / "snapshot.pt", _use_new_zipfile_serialization=True,
               pickle_module=pickle)
    return w


def _shd(name):
    return lambda w: ["--set", "data.kind=shd", "--set", f"data.path={w['dir'] / name}",
                      "--set", "data.n_classes=3"]


def _train(*extra, cfg="cfg"):
    def argv(w):
        out = ["train", str(w[cfg])]
        for a in extra:
            v = a(w) if callable(a) else a
            out += v if isinstance(v, list) else [v]
        return out
    return argv


def _sets(*items):
    return _train(*[x for s in items for x in ("--set", s)])


NO_WRITE = "/proc/spiketrain-no-such/run"     # nobody, root included, creates folders here

CASES = {
    # config values
    "threads_negative": _sets("trainer.threads=-2"),
    "lr_inf": _sets("trainer.lr=.inf"),
    "lr_nan": _sets("trainer.lr=.nan"),
    "lr_1e300": _sets("trainer.lr=1e300"),
    "clip_negative": _sets("trainer.clip_grad=-1"),
    "on_nonfinite_unknown": _sets("trainer.on_nonfinite=ignore"),
    "budget_not_mapping": _sets("strategy.budget=1GiB"),
    "budget_unknown_tier": _sets("strategy.budget={gpu: 1GiB}"),
    "budget_bad_size": _sets("strategy.budget={device: lots}"),
    "strategy_unknown": _train("--strategy", "bptx"),
    # model / data sizes
    "n_in_mismatch": _sets("model.n_in=10"),
    "n_out_too_small": _sets("model.n_out=2"),
    # class paths that are not what they claim (nothing may be called)
    "model_os_system": _train(cfg="evil_model"),
    "plan_os_system": lambda w: ["plan", str(w["evil_model"])],
    "model_not_a_model": _train(cfg="not_model"),
    "strategy_os_system": _train(cfg="evil_strategy"),
    "task_popen": _train(cfg="evil_task"),
    "neuron_os_system": _sets("model.neuron=os:system"),
    # config files
    "config_missing": lambda w: ["train", str(w["dir"] / "nope.yaml")],
    "config_bad_yaml": _train(cfg="bad_yaml"),
    "config_a_list": _train(cfg="list_yaml"),
    "config_binary": _train(cfg="binary_yaml"),
    # run folders
    "out_is_a_file": _train("--out", lambda w: str(w["afile"])),
    "out_not_writable": _train("--out", NO_WRITE),
    "out_holds_a_run": _train("--out", lambda w: str(w["earlier"])),
    "resume_and_overwrite": _train("--resume", lambda w: str(w["earlier"]), "--overwrite"),
    "cache_dir_not_writable": _sets("data.cache_dir=/proc/spiketrain-no-such", "data.seed=9"),
    "cache_dir_is_a_file": lambda w: _sets("data.seed=9")(w) + [
        "--set", f"data.cache_dir={w['afile']}"],
    # resume
    "resume_missing": _train("--resume", lambda w: str(w["dir"] / "no_run")),
    "resume_changed_model": _train("--resume", lambda w: str(w["earlier"] / "snapshot.pt"),
                                   "--set", "model.hidden=64"),
    "resume_changed_optimizer": _train("--resume", lambda w: str(w["earlier"]),
                                       "--set", "trainer.optimizer=sgd"),
    "snapshot_truncated": _train("--resume", lambda w: str(w["dir"] / "snap_trunc")),
    "snapshot_empty": _train("--resume", lambda w: str(w["dir"] / "snap_empty")),
    "snapshot_garbage": _train("--resume", lambda w: str(w["dir"] / "snap_garbage")),
    "snapshot_malicious": _train("--resume", lambda w: str(w["dir"] / "snap_evil")),
    # SHD files
    "shd_missing": _sets("data.kind=shd", "data.path=/no/such/shd.h5"),
    "shd_damaged_header": _train(_shd("header.h5")),
    "shd_truncated": _train(_shd("trunc.h5")),
    "shd_text": _train(_shd("text.h5")),
    "shd_negative_units": _train(_shd("neg_units.h5")),
    "shd_units_beyond_n_in": _train(_shd("big_units.h5")),
    "shd_fewer_labels": _train(_shd("few_labels.h5")),
    "shd_float_labels": _train(_shd("float_labels.h5")),
    "shd_2d_labels": _train(_shd("labels_2d.h5")),
    "shd_times_units_differ": _train(_shd("len_mismatch.h5")),
    "shd_no_times": _train(_shd("no_times.h5")),
    # Ray
    "ray_unreachable": _train("--workers", "1", "--address", "127.0.0.1:1"),
    "ray_workers_zero": _train("--workers", "0"),
    "plan_bad_budget": lambda w: ["plan", str(w["cfg"]), "--budget", "gpu=1GiB"],
}


# these run as the real console script in a fresh interpreter (a config file, a class path,
# a snapshot, an SHD file, Ray)
FRESH = ("config_binary", "model_os_system", "snapshot_malicious", "shd_damaged_header",
         "ray_unreachable")


# cheap config mistakes: the same checks, in this process
IN_PROCESS = {
    "offload_scratch_without_disk_tier": lambda w: _train("--strategy", "offload")(w) + [
        "--set", f"strategy.scratch={w['dir'] / 'scratch'}"],
    "offload_scratch_is_a_file": lambda w: _train("--strategy", "offload")(w) + [
        "--set", "strategy.tier=disk", "--set", f"strategy.scratch={w['afile']}"],
    "offload_scratch_not_writable": _train("--strategy", "offload", "--set", "strategy.tier=disk",
                                           "--set", f"strategy.scratch={NO_WRITE}"),
    "lr_zero": _sets("trainer.lr=0"),
    "weight_decay_negative": _sets("trainer.weight_decay=-0.1"),
    "epochs_negative": _sets("trainer.epochs=-1"),
    "batch_zero": _sets("trainer.batch_size=0"),
    "workers_zero": _sets("trainer.workers=0"),
    "optimizer_unknown": _sets("trainer.optimizer=adamm"),
    "data_T_zero": _sets("data.T=0"),
    "hardware_unknown": _sets("hardware=gpu9"),
    "set_without_value": _train("--set", "trainer.epochs"),
    "unknown_section": _sets("trainr.epochs=2"),
}


def _flatten(argv, w):
    out = []
    for a in argv:
        out += a(w) if callable(a) else [a]
    return out


ENV = {**os.environ, "SPIKETRAIN_DEBUG": "", "RAY_ADDRESS": ""}


def _cwd(name, w):
    cwd = w["dir"] / "cwd" / name
    cwd.mkdir(parents=True)
    return cwd


def _run(name, w):
    """One case as the console script in a new interpreter."""
    cwd = _cwd(name, w)
    argv = _flatten(CASES[name](w), w)
    exe = Path(sys.executable).with_name("spiketrain")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "spiketrain.launch.cli"]
    t0 = time.monotonic()
    r = subprocess.run(cmd + argv, cwd=cwd, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL, env=ENV)
    return name, argv, r, sorted(os.listdir(cwd)), time.monotonic() - t0


def _run_forked(names, w):
    """The cases ``names``, each in a process forked from one interpreter (cli_forks.py)."""
    cases = [{"name": n, "argv": _flatten(CASES[n](w), w), "cwd": str(_cwd(n, w)),
              "env": ENV} for n in names]
    script = Path(__file__).with_name("cli_forks.py")
    r = subprocess.run([sys.executable, str(script), "2"], input=json.dumps(cases),
                       capture_output=True, text=True, timeout=480, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    out = []
    for res, case in zip(sorted(json.loads(r.stdout), key=lambda x: names.index(x["name"])),
                         cases):
        done = subprocess.CompletedProcess(case["argv"], res["returncode"], res["stdout"],
                                           res["stderr"])
        out.append((case["name"], case["argv"], done, sorted(os.listdir(case["cwd"])),
                    res["seconds"]))
    return out


def test_table_has_forty_cases():
    assert len(CASES) >= 40 and len(CASES) + len(IN_PROCESS) >= 50
    assert set(FRESH) <= set(CASES)


@pytest.mark.timeout(600)
def test_bad_inputs_exit_2_with_one_line(world):
    before = {k: _tree(world["dir"] / k) for k in ("earlier", "snap_trunc", "snap_evil")}
    forked = [n for n in CASES if n not in FRESH]
    with ThreadPoolExecutor(max_workers=2) as pool:
        fresh = pool.map(lambda n: _run(n, world), FRESH)
        results = list(fresh)
    results += _run_forked(forked, world)
    problems = []
    print(f"fresh {sum(x[4] for x in results if x[0] in FRESH):.1f} s, forked "
          f"{sum(x[4] for x in results if x[0] not in FRESH):.1f} s (process seconds)")
    for name, argv, r, left, secs in sorted(results, key=lambda x: -x[4])[:5]:
        print(f"slowest: {name} {secs:.1f} s")
    for name, argv, r, left, _ in results:
        err = r.stderr.strip().splitlines()
        why = []
        if r.returncode != 2:
            why.append(f"exit {r.returncode}")
        if len(err) > 2:
            why.append(f"{len(err)} stderr lines")
        if "Traceback" in r.stderr:
            why.append("traceback")
        if left:
            why.append(f"left {left} in the working directory")
        if why:
            problems.append(f"{name} ({' '.join(argv)}): {', '.join(why)}\n{r.stderr[-1500:]}")
    assert not problems, "\n\n".join(problems)
    assert not Path(NO_WRITE).exists()
    assert not list(world["dir"].rglob("PWNED"))
    for k, tree in before.items():
        assert _tree(world["dir"] / k) == tree, f"{k} changed"


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_cheap_bad_inputs_in_process(world, name, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    before = _tree(world["earlier"])
    assert main(IN_PROCESS[name](world)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not os.listdir(tmp_path)
    assert _tree(world["earlier"]) == before
