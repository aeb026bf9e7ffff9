"""Synthetic event-camera recordings in the Gen1 file formats (``*_td.dat`` + ``*_bbox.npy``).

Each recording shows a few bright objects moving over a dark scene, bouncing off the sensor
borders and breathing in size: class 0 "car" (a wide rectangle) and class 1 "pedestrian" (a
tall ellipse). An edge moving with normal speed ``v_n`` px/s fires about
``edge_gain * |v_n| * dt`` events per pixel of edge per step ``dt``: ON (p = 1) where the
edge advances into the dark (leading edge), OFF (p = 0) where it uncovers it (trailing
edge). Background noise events are uniform in space, time and polarity. A ground-truth box
per visible object is written every ``box_period_ms`` (from ``box_period_ms`` on).

Everything is drawn from ``numpy.random.default_rng([seed, index])``: the same seed gives
byte-identical files. :func:`cached_event_recordings` writes a split once under a cache
folder keyed by a hash of its parameters.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np

from .gen1_format import BBOX_DTYPE, write_bbox, write_dat

FORMAT_VERSION = 1
CLASS_NAMES = ("car", "pedestrian")


def _boundary(cls: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``n`` boundary points of class ``cls``'s unit shape in box units (``u [n, 2]`` in
    ``[-0.5, 0.5]``), the side of each point (rectangle: 0 top, 1 right, 2 bottom, 3 left)
    and the rectangle's fixed outward normals ``[n, 2]`` (None for the ellipse, whose normal
    at size ``(w, h)`` is along ``u / (w, h)**2``)."""
    if cls == 0:
        m = n // 4
        f = (np.arange(m) + 0.5) / m - 0.5
        half = np.full(m, 0.5)
        u = np.concatenate([np.stack(a, 1) for a in
                            ((f, -half), (half, f), (-f, half), (-half, -f))])
        normals = np.repeat(np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), m, 0)
        return u, np.repeat(np.arange(4), m), normals
    th = (np.arange(n) + 0.5) / n * 2 * np.pi
    return 0.5 * np.stack([np.cos(th), np.sin(th)], 1), np.zeros(n, dtype=int), None


def _trajectory(rng, n_steps: int, dt: float, width: int, height: int, base_w: float,
                base_h: float, speed: tuple[float, float]):
    """Centre ``[n_steps, 2]``, velocity ``[n_steps, 2]`` (px/s), scale and its rate
    ``[n_steps]`` of one object bouncing inside the sensor."""
    amp, freq, phase = rng.uniform(0.1, 0.3), rng.uniform(0.3, 1.0), rng.uniform(0, 2 * np.pi)
    t = np.arange(n_steps) * dt
    scale = 1 + amp * np.sin(2 * np.pi * freq * t + phase)
    dscale = amp * 2 * np.pi * freq * np.cos(2 * np.pi * freq * t + phase)
    half = 0.5 * (1 + amp) * np.array([base_w, base_h])
    lo, hi = half, np.array([width, height]) - half
    hi = np.maximum(hi, lo + 1)
    pos = rng.uniform(lo, hi)
    ang = rng.uniform(0, 2 * np.pi)
    vel = rng.uniform(*speed) * width * np.array([np.cos(ang), np.sin(ang)])
    centres, vels = np.empty((n_steps, 2)), np.empty((n_steps, 2))
    for k in range(n_steps):
        centres[k], vels[k] = pos, vel
        pos = pos + vel * dt
        for a in range(2):
            if pos[a] < lo[a] or pos[a] > hi[a]:
                vel[a] = -vel[a]
                pos[a] = np.clip(pos[a], lo[a], hi[a])
    return centres, vels, scale, dscale


def make_recording(seed, duration_s: float = 3.0, width: int = 304, height: int = 240,
                   max_objects: int = 3, noise_rate: float = 0.2, edge_gain: float = 2.0,
                   speed: tuple[float, float] = (0.5, 1.5), box_period_ms: float = 50.0,
                   step_ms: float = 1.0):
    """One recording: ``(t us int64, x, y, p, boxes BBOX_DTYPE)``, events sorted by ``t``.

    ``noise_rate``: background events per pixel and second; ``speed``: object speeds as a
    fraction of the sensor width per second; ``edge_gain``: events per pixel of edge per pixel
    of edge travel (each polarity side).
    """
    rng = np.random.default_rng(seed)
    dt = step_ms / 1000.0
    n_steps = int(round(duration_s / dt))
    step_us = int(round(step_ms * 1000))
    n_obj = int(rng.integers(1, max_objects + 1))
    ts, xs, ys, ps = [], [], [], []
    box_every = int(round(box_period_ms / step_ms))
    box_steps = np.arange(box_every, n_steps, box_every)
    boxes = np.zeros(len(box_steps) * n_obj, dtype=BBOX_DTYPE)
    for j in range(n_obj):
        cls = int(rng.integers(0, 2))
        if cls == 0:
            bw = rng.uniform(0.18, 0.30) * width
            bh = bw * rng.uniform(0.45, 0.6)
        else:
            bh = rng.uniform(0.28, 0.42) * height
            bw = bh * rng.uniform(0.35, 0.45)
        c, v, s, ds = _trajectory(rng, n_steps, dt, width, height, bw, bh, speed)
        w, h = bw * s, bh * s                                # [n_steps]
        dw, dh = bw * ds, bh * ds
        n_pts = 4 * int(np.ceil((bw + bh) * 1.3))           # ~2 points per px of perimeter
        u, side, fixed_normals = _boundary(cls, n_pts)
        if cls == 0:   # rectangle: arc-length share follows the side lengths
            seg = np.where(side[None] % 2 == 0, w[:, None], h[:, None]) / (n_pts / 4)
            normals = np.broadcast_to(fixed_normals, (n_steps, n_pts, 2))
        else:
            gx, gy = u[None, :, 0] / w[:, None] ** 2, u[None, :, 1] / h[:, None] ** 2
            norm = np.sqrt(gx ** 2 + gy ** 2)
            normals = np.stack([gx / norm, gy / norm], -1)
            seg = (np.pi * (w + h) / 2 / n_pts)[:, None] * np.ones(n_pts)   # ~ perimeter share
        pos = c[:, None, :] + u[None] * np.stack([w, h], -1)[:, None, :]       # [S, n, 2]
        vel = v[:, None, :] + u[None] * np.stack([dw, dh], -1)[:, None, :]
        vn = (vel * normals).sum(-1)                                           # [S, n]
        counts = rng.poisson(edge_gain * np.abs(vn) * dt * seg)
        k_step, k_pt = np.nonzero(counts)
        reps = counts[k_step, k_pt]
        k_step, k_pt = np.repeat(k_step, reps), np.repeat(k_pt, reps)
        n_ev = k_step.size
        ex = pos[k_step, k_pt, 0] + rng.uniform(-0.7, 0.7, n_ev)
        ey = pos[k_step, k_pt, 1] + rng.uniform(-0.7, 0.7, n_ev)
        ts.append(k_step.astype(np.int64) * step_us + rng.integers(0, step_us, n_ev))
        xs.append(np.floor(ex))
        ys.append(np.floor(ey))
        ps.append((vn[k_step, k_pt] > 0).astype(np.int64))
        rows = slice(j * len(box_steps), (j + 1) * len(box_steps))
        boxes["t"][rows] = box_steps.astype(np.int64) * step_us
        boxes["x"][rows] = c[box_steps, 0] - w[box_steps] / 2
        boxes["y"][rows] = c[box_steps, 1] - h[box_steps] / 2
        boxes["w"][rows], boxes["h"][rows] = w[box_steps], h[box_steps]
        boxes["class_id"][rows], boxes["track_id"][rows] = cls, j
        boxes["class_confidence"][rows] = 1.0
    n_noise = int(rng.poisson(noise_rate * width * height * duration_s))
    ts.append(rng.integers(0, n_steps * step_us, n_noise))
    xs.append(rng.integers(0, width, n_noise).astype(float))
    ys.append(rng.integers(0, height, n_noise).astype(float))
    ps.append(rng.integers(0, 2, n_noise))
    t, x, y, p = (np.concatenate(a) for a in (ts, xs, ys, ps))
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    t, x, y, p = t[keep], x[keep].astype(np.int64), y[keep].astype(np.int64), p[keep]
    order = np.argsort(t, kind="stable")
    boxes = boxes[np.argsort(boxes["t"], kind="stable")]
    return t[order], x[order], y[order], p[order], boxes


def write_recordings(folder: str | os.PathLike, n: int, seed: int = 0, legacy_boxes: bool = False,
                     **kw) -> list[str]:
    """Write ``n`` recordings ``rec_0000_td.dat`` / ``rec_0000_bbox.npy`` ... into ``folder``;
    recording ``i`` is drawn from ``default_rng([seed, i])``. Returns the ``.dat`` paths."""
    os.makedirs(folder, exist_ok=True)
    width, height = kw.get("width", 304), kw.get("height", 240)
    paths = []
    for i in range(n):
        t, x, y, p, boxes = make_recording([seed, i], **kw)
        stem = os.path.join(os.fspath(folder), f"rec_{i:04d}")
        write_dat(stem + "_td.dat", t, x, y, p, width=width, height=height)
        write_bbox(stem + "_bbox.npy", boxes, legacy=legacy_boxes)
        paths.append(stem + "_td.dat")
    return paths


def cached_event_recordings(cache_dir: str | os.PathLike, n: int, seed: int, **kw) -> str:
    """Folder of ``n`` synthetic recordings for these parameters under ``cache_dir``
    (generated once, into a temporary folder renamed into place)."""
    key = json.dumps(dict(kw, n=n, seed=seed, version=FORMAT_VERSION), sort_keys=True,
                     default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    folder = os.path.join(os.fspath(cache_dir), f"synthetic_events_{digest}")
    if os.path.isdir(folder):
        return folder
    tmp = f"{folder}.tmp{os.getpid()}"
    try:
        write_recordings(tmp, n, seed, **kw)
        with open(os.path.join(tmp, "generator.json"), "w") as f:
            f.write(key)
        try:
            os.replace(tmp, folder)
        except OSError:          # another process finished the same folder first
            if not os.path.isdir(folder):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return folder
