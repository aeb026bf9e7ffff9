"""Device profiles: memory per tier, bandwidths and peak FLOP/s, for planning before running.

``get_profile("cpu")`` measures this machine once (a matmul, a memory copy, a scratch-file
write/read: well under a second). ``a100``, ``h100`` and ``ipu-gc200`` hold published
datasheet figures (``source`` says which). A backend's :meth:`profile` gives its device's;
the planner (``auto``) prices slow-tier traffic with :meth:`DeviceProfile.seconds_per_byte`.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import torch

GB = 1000**3
GiB = 1024**3


@dataclass(frozen=True)
class DeviceProfile:
    """What a device offers. ``memory`` and ``bandwidth`` map tier -> bytes and bytes/s:
    ``device`` bandwidth is device-memory bandwidth, ``host`` the device<->host link,
    ``disk`` the scratch-disk rate. ``peak_flops`` is dense float32 FLOP/s (``peak_flops_16``
    half precision)."""

    name: str
    memory: dict[str, int]
    bandwidth: dict[str, float]
    peak_flops: float
    peak_flops_16: float = 0.0
    source: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def seconds_per_byte(self, tier: str) -> float:
        """Seconds to move one byte to or from ``tier`` (1 / its bandwidth): what the planner
        (``auto``) charges for every state a schedule writes to or reads from a slow tier."""
        return 1.0 / self.bandwidth[tier]


def _ram_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def median_time(fn, repeats: int = 5) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


@functools.lru_cache(maxsize=None)
def measure_cpu(scratch: str | None = None) -> DeviceProfile:
    """Measure this CPU: float32 matmul FLOP/s, memory copy bandwidth, scratch-disk write+read
    bandwidth. Cached: runs once per process."""
    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = 2 * n**3 / median_time(lambda: a @ b)
    src = torch.empty(8 * 1024 * 1024)  # 32 MiB
    dst = torch.empty_like(src)
    mem_bw = 2 * src.numel() * 4 / median_time(lambda: dst.copy_(src))
    folder = scratch or tempfile.gettempdir()
    data = os.urandom(8 * 1024 * 1024)
    path = os.path.join(folder, f".spiketrain_probe_{os.getpid()}")

    def io():
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with open(path, "rb") as f:
            f.read()

    try:
        disk_bw = 2 * len(data) / median_time(io, repeats=3)
    except OSError:
        disk_bw = 100e6
    finally:
        if os.path.exists(path):
            os.remove(path)
    ram = _ram_bytes()
    disk = shutil.disk_usage(folder).free
    return DeviceProfile(
        name="cpu", memory={"device": ram, "host": ram, "disk": disk},
        bandwidth={"device": mem_bw, "host": mem_bw, "disk": disk_bw}, peak_flops=flops,
        peak_flops_16=flops, source=f"measured on this machine ({torch.get_num_threads()} threads)")


# Published figures (vendor datasheets). Bandwidths in bytes/s, FLOP/s dense (no sparsity).
A100 = DeviceProfile(
    name="a100", memory={"device": 80 * GB, "host": 1024 * GB, "disk": 4000 * GB},
    bandwidth={"device": 2039e9, "host": 32e9, "disk": 2e9}, peak_flops=19.5e12,
    peak_flops_16=312e12, extra={"tf32_flops": 156e12},
    source="NVIDIA A100 80GB SXM datasheet: 2,039 GB/s HBM2e, FP32 19.5 TFLOPS, FP16 312 "
           "TFLOPS, PCIe Gen4 x16 (64 GB/s both directions); host RAM and disk are typical "
           "server values")
H100 = DeviceProfile(
    name="h100", memory={"device": 80 * GB, "host": 2048 * GB, "disk": 8000 * GB},
    bandwidth={"device": 3.35e12, "host": 64e9, "disk": 4e9}, peak_flops=67e12,
    peak_flops_16=989e12, extra={"tf32_flops": 494.5e12},
    source="NVIDIA H100 SXM5 datasheet: 3.35 TB/s HBM3, FP32 67 TFLOPS, FP16 989 TFLOPS dense, "
           "PCIe Gen5 x16 (128 GB/s both directions); host RAM and disk are typical server values")
IPU_GC200 = DeviceProfile(
    name="ipu-gc200", memory={"device": 900 * 1000**2, "host": 112 * GB, "disk": 2000 * GB},
    bandwidth={"device": 47.5e12, "host": 20e9, "disk": 1e9}, peak_flops=62.5e12,
    peak_flops_16=250e12, extra={"tiles": 1472, "threads": 8832},
    source="Graphcore GC200 / IPU-M2000 datasheets: 900 MB In-Processor-Memory at 47.5 TB/s, "
           "1,472 tiles, FP32 62.5 TFLOPS, FP16 250 TFLOPS; streaming memory up to 448 GB per "
           "M2000 (4 IPUs, 112 GB each); the 20 GB/s streaming bandwidth per IPU is an estimate")

PROFILES = {"a100": A100, "h100": H100, "ipu-gc200": IPU_GC200}
ALIASES = {"gc200": "ipu-gc200", "ipu": "ipu-gc200"}


def available_profiles() -> list[str]:
    return ["cpu"] + sorted(PROFILES)


def get_profile(name: str = "cpu") -> DeviceProfile:
    """Profile by name: ``cpu`` (measured), ``a100``, ``h100``, ``ipu-gc200`` (published),
    or ``cuda`` (the local GPU: its memory from the driver, bandwidth/FLOP/s of the closest
    known card)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key == "cpu":
        return measure_cpu()
    if key == "cuda":
        return cuda_profile()
    if key not in PROFILES:
        raise ValueError(f"unknown device profile {name!r}; choose one of {available_profiles()}")
    return PROFILES[key]


def cuda_profile(index: int = 0) -> DeviceProfile:
    """Profile of the local CUDA device: memory from the driver, rates from the published
    profile whose name matches (H100, else A100 figures)."""
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device here; use get_profile('a100') or 'h100' to plan for one")
    props = torch.cuda.get_device_properties(index)
    base = H100 if "H100" in props.name or "H200" in props.name else A100
    mem = dict(base.memory, device=int(props.total_memory), host=_ram_bytes())
    return DeviceProfile(name=f"cuda:{props.name}", memory=mem, bandwidth=base.bandwidth,
                         peak_flops=base.peak_flops, peak_flops_16=base.peak_flops_16,
                         source=f"memory from the driver; rates from the {base.name} datasheet")
