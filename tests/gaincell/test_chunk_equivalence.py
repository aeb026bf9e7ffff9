"""Chunked recurrent processing equals full-sequence processing and stepping."""
import pytest
import torch

from spiketrain.models import state_nbytes
from spiketrain.models.gaincell import GainCellGPT

M = 128
KINDS = ["linear_gaincell", "gaincell", "softmax"]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: a multi-threaded BLAS may split a product differently from one
    call to the next (with dynamic threading, under load), and the float32 outputs here are
    compared bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(kind, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    m = GainCellGPT(n_layer=2, n_head=2, n_embd=16, window=M, attention=kind, **kw).to(dtype)
    with torch.no_grad():
        for s in m.scalers():
            if s.name in ("q", "k", "v"):
                s.a.fill_(8.0)
                s.b.add_(0.3 if s.name == "q" else 0.0)
    return m


def run_chunks(model, x, size):
    state, ys = model.init_state(x.shape[1]), []
    for t0 in range(0, x.shape[0], size):
        state, y = model.chunk(state, x[t0:t0 + size])
        ys.append(y)
    return state, torch.cat(ys)


def grads_of(model, fn):
    model.zero_grad()
    y = fn()
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
    (y * w).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                        if p.grad is not None}


def assert_grads_close(g1, g0, tol=1e-5, floor=1e-12):
    """Per parameter, relative to its largest gradient (``floor``: relative to the largest
    gradient of all, for gradients that cancel to rounding noise, e.g. a softmax key bias)."""
    assert g1.keys() == g0.keys() and g0
    top = max(g.abs().max() for g in g0.values())
    for n in g0:
        scale = torch.maximum(g0[n].abs().max(), floor * top).clamp(min=1e-30)
        assert ((g1[n] - g0[n]).abs().max() / scale) <= tol, n


F32, F64 = torch.float32, torch.float64
# chunk sizes that divide the window (64, 128) and that do not (48, 100, 1)
CASES = ([(k, n, F32) for k in KINDS for n in (64, 128, 48, 100)]
         + [(k, n, F64) for k in KINDS for n in (128, 100)] + [("gaincell", 1, F32)])


@pytest.mark.parametrize("kind,size,dtype", CASES)
def test_chunked_equals_full_sequence(kind, size, dtype):
    m = make(kind, dtype)
    T = 260
    x = torch.randint(0, 256, (T, 2), generator=torch.Generator().manual_seed(1))
    y0, g0 = grads_of(m, lambda: m(x))
    y1, g1 = grads_of(m, lambda: run_chunks(m, x, size)[1])
    # 64-row blocks aligned to absolute positions: the same arithmetic wherever chunks split
    assert torch.equal(y1, y0)
    # float32: gradients summed in another order; near-zero ones compare to the largest
    assert_grads_close(g1, g0, floor=1e-12 if dtype == torch.float64 else 1e-2)
    s_full = m.chunk(m.init_state(2), x)[0]
    s_chunk = run_chunks(m, x, size)[0]
    assert int(s_chunk["pos"]) == T
    for a, b in zip(s_full["k"] + s_full["v"], s_chunk["k"] + s_chunk["v"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_step_equals_chunk(kind):
    m = make(kind, torch.float64)       # float64: no quantisation level flips on rounding
    T = 200
    x = torch.randint(0, 256, (T, 2), generator=torch.Generator().manual_seed(4))

    def stepped():
        state, ys = m.init_state(2), []
        for x_t in x.unbind(0):
            state, y = m.step(state, x_t)
            ys.append(y)
        return torch.stack(ys)

    y0, g0 = grads_of(m, lambda: m(x))
    y1, g1 = grads_of(m, stepped)
    assert torch.allclose(y1, y0, rtol=1e-5, atol=1e-7)
    assert_grads_close(g1, g0)


def test_state_has_fixed_size_and_step_is_pure():
    m = make("gaincell")
    x = torch.randint(0, 256, (150, 3))
    s0 = m.init_state(3)
    nbytes = state_nbytes(s0)
    assert nbytes >= 2 * 2 * 3 * M * 16 * 4      # layers x (k, v) x B x M x C floats
    s1, _ = m.chunk(s0, x)
    assert state_nbytes(s1) == nbytes           # the planners' one measurement holds
    snap = {k: [t.clone() for t in v] if isinstance(v, tuple) else v.clone() for k, v in s1.items()}
    a_state, a = m.step(s1, x[0])
    b_state, b = m.step(s1, x[0])
    assert torch.equal(a, b)                    # same (state, x_t) -> same output
    for k in ("k", "v"):
        for t, u in zip(s1[k], snap[k]):
            assert torch.equal(t, u)            # the input state is never mutated
        for t, u in zip(a_state[k], b_state[k]):
            assert torch.equal(t, u)
    assert int(a_state["pos"]) == 151 and int(s1["pos"]) == 150
    assert state_nbytes(a_state) == nbytes


def test_long_sequence_memory_of_a_step_is_window_bounded():
    m = make("linear_gaincell")
    s = m.init_state(1)
    s, _ = m.chunk(s, torch.randint(0, 256, (5 * M + 17, 1)))
    s2, y = m.step(s, torch.tensor([3]))
    assert y.shape == (1, 256) and s2["k"][0].shape == (1, 2, M, 8)
