"""Latency/energy estimate: the paper's per-token circuit figures, the GPU roofline by hand."""
import pytest

from spiketrain.hardware.profiles import A100, H100
from spiketrain.models.gaincell.estimate import (AttentionShape, format_table, gaincell_estimate,
                                                 gpu_estimate, gpu_work, power_of)


def test_gaincell_figures_at_the_paper_geometry():
    one_head = gaincell_estimate(AttentionShape(1, 1, 64, 1024))
    assert one_head.latency_s == pytest.approx(65e-9)
    assert one_head.energy_j == pytest.approx(1.12e-9 + 0.70e-9 + 4e-9 + 0.33e-9)
    assert one_head.parts == pytest.approx({"phi(QK^T)": 1.12e-9, "phi(S)V": 0.70e-9,
                                            "digital & routing": 4e-9, "DAC": 0.33e-9})
    gpt2_layer = gaincell_estimate(AttentionShape.paper())        # 12 heads in parallel
    assert gpt2_layer.latency_s == pytest.approx(65e-9)
    assert gpt2_layer.energy_j == pytest.approx(12 * 6.15e-9)
    deep = gaincell_estimate(AttentionShape(4, 12, 64, 1024))      # layers one after another
    assert deep.latency_s == pytest.approx(4 * 65e-9)
    assert deep.energy_j == pytest.approx(4 * 12 * 6.15e-9)
    assert len(gpt2_layer.notes) == 1                               # no scaling note


def test_gaincell_scaling_with_geometry():
    e = gaincell_estimate(AttentionShape(1, 1, 32, 2048))          # same cells, half the DACs
    assert e.parts["phi(QK^T)"] == pytest.approx(1.12e-9)
    assert e.parts["DAC"] == pytest.approx(0.33e-9 / 2)
    assert e.latency_s == pytest.approx(65e-9)
    assert any("assumption" in n for n in e.notes)


def test_gpu_roofline_by_hand():
    shape = AttentionShape.paper()
    flops, nbytes = gpu_work(shape, batch=1, bytes_per_value=2)
    assert flops == 12 * (4 * 1024 * 64 + 5 * 1024)
    assert nbytes == 12 * (2 * 1024 * 64 + 4 * 64) * 2
    e = gpu_estimate(shape, H100, batch=1, bytes_per_value=2)
    t = nbytes / (3.35e12 * 0.5)                                   # memory-bound on H100
    assert e.latency_s == pytest.approx(t)
    assert e.energy_j == pytest.approx(700.0 * t)
    assert e.parts["compute s"] < e.parts["memory s"]
    # a batch shares nothing in attention (each sequence has its own window): same per token
    assert gpu_estimate(shape, H100, batch=8).latency_s == pytest.approx(t)
    assert gpu_estimate(shape, H100, power_w=350).energy_j == pytest.approx(350 * t)
    f32 = gpu_estimate(shape, A100, bytes_per_value=4, efficiency=1.0)
    assert f32.latency_s == pytest.approx(gpu_work(shape, 1, 4)[1] / 2039e9)


def test_orders_of_magnitude_match_the_papers_claim():
    """The paper: up to 10^2 lower latency and 10^4 lower energy than GPUs."""
    shape = AttentionShape.paper()
    gc, gpu = gaincell_estimate(shape), gpu_estimate(shape, H100)
    assert 10 < gpu.latency_s / gc.latency_s < 1e3
    assert 1e3 < gpu.energy_j / gc.energy_j < 1e5
    table = format_table(shape, gc, gpu)
    assert "65 ns" in table and "73.8 nJ" in table and "ratio" in table


def test_power_assumptions():
    assert power_of("h100") == 700 and power_of("cuda:NVIDIA H200") == 700
    assert power_of("a100") == 400
    with pytest.raises(ValueError, match="--power"):
        power_of("mystery-accelerator")
    with pytest.raises(ValueError):
        gpu_estimate(AttentionShape.paper(), H100, batch=0)
