"""gaincell_gpt as a registered RecurrentModel: construction, kinds switched in place, and
the calibration API (scalers and their running statistics)."""
import pytest
import torch

import spiketrain as st
from spiketrain.models.gaincell import KINDS, GainCellGPT


def small(**kw):
    torch.manual_seed(0)
    opts = dict(n_layer=2, n_head=2, n_embd=16, window=64)
    opts.update(kw)
    return GainCellGPT(**opts)


def test_registered_by_name():
    m = st.models.build("gaincell_gpt", n_layer=1, n_head=2, n_embd=8, window=64,
                        attention="gaincell")
    assert isinstance(m, GainCellGPT) and isinstance(m, st.RecurrentModel)
    y = m(torch.randint(0, 256, (10, 3)))
    assert y.shape == (10, 3, 256) and torch.isfinite(y).all()


@pytest.mark.parametrize("bad,match", [
    (dict(window=100), "multiple of the array size"),
    (dict(attention="sigmoid"), "unknown attention"),
    (dict(n_embd=15), "multiple of n_head"),
])
def test_invalid_options(bad, match):
    with pytest.raises(ValueError, match=match):
        small(**bad)


def test_inputs_must_be_time_major_tokens():
    with pytest.raises(ValueError, match=r"\[T, B\]"):
        small()(torch.zeros(4, 2, 3))


def test_set_attention_keeps_weights_and_state_layout():
    m = small(attention="linear_gaincell")
    with torch.no_grad():   # at a = 1 the cells sit near 0.45 and every kind's ADC reads 0
        for s in m.scalers():
            s.a.fill_(8.0 if s.name != "out" else 1.0)
    x = torch.randint(0, 256, (80, 2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    outs = {}
    for kind in KINDS:
        m.set_attention(kind)
        assert m.attention == kind and all(b.attn.kind == kind for b in m.h)
        s, outs[kind] = m.chunk(m.init_state(2), x)
        assert s["k"][0].shape == (2, 2, 64, 8)
    after = m.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(outs["gaincell"], outs["linear_gaincell"])
    with pytest.raises(ValueError):
        m.set_attention("nope")


def test_scalers_api():
    m = small(n_layer=3)
    sc = list(m.scalers())
    assert [(s.layer, s.name) for s in sc] == [(l, n) for l in range(3)
                                                for n in ("q", "k", "v", "out")]
    for s in sc:
        assert isinstance(s.a, torch.nn.Parameter) and s.a.shape == (2,)
        assert isinstance(s.b, torch.nn.Parameter) and s.b.shape == (2,)
        assert s.mean is None and s.std is None
        # K and V start at b = 0.45 (the cells' zero), everything else at a = 1, b = 0
        assert torch.equal(s.b, torch.full((2,), 0.45 if s.name in "kv" else 0.0))
        assert torch.equal(s.a, torch.ones(2))
    # scaler parameters are trainable and reach the optimizer through parameters()
    names = {n for n, _ in m.named_parameters()}
    assert "h.0.attn.q.a" in names and "h.2.attn.out.b" in names


def _outputs_of_scalers(m, x):
    """Record every scaler's output on the real token rows with forward hooks."""
    rec = {}
    hooks = [s.register_forward_hook(
        lambda mod, inp, out, key=(s.layer, s.name): rec.setdefault(key, []).append(
            out.detach()[:, :, inp[1] if len(inp) > 1 else slice(None)]))
        for s in m.scalers()]
    try:
        with torch.no_grad():
            m(x)
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v, 2) for k, v in rec.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_scaler_stats_track_mean_and_std_with_ema(kind):
    m = small(attention=kind)
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randint(0, 256, (100, 3), generator=g) for _ in range(2))
    y_plain = m(x1)
    m.scaler_stats(True)
    with torch.no_grad():
        y_tracked = m(x1)
    assert torch.equal(y_plain, y_tracked)            # statistics never change outputs
    first = {(s.layer, s.name): (s.mean.clone(), s.std.clone()) for s in m.scalers()}
    ref1 = _outputs_of_scalers(m, x1)
    m.scaler_stats(True)                              # start afresh, then two batches
    with torch.no_grad():
        m(x1)
        m(x2)
    m.scaler_stats(False)
    ref2 = _outputs_of_scalers(m, x2)
    for s in m.scalers():
        key = (s.layer, s.name)
        out1, out2 = ref1[key], ref2[key]
        assert out1.shape[2] == 100                   # the padded rows are not counted
        mu1, sd1 = out1.mean((0, 2, 3)), out1.std((0, 2, 3))
        mu2, sd2 = out2.mean((0, 2, 3)), out2.std((0, 2, 3))
        assert torch.allclose(first[key][0], mu1, atol=1e-5)
        assert torch.allclose(first[key][1], sd1, atol=1e-5, rtol=1e-4)
        assert torch.allclose(s.mean, 0.9 * mu1 + 0.1 * mu2, atol=1e-5)     # EMA 0.1
        assert torch.allclose(s.std, 0.9 * sd1 + 0.1 * sd2, atol=1e-5, rtol=1e-4)
        assert s.mean.shape == (2,)
    # off: nothing changes any more
    frozen = [s.mean.clone() for s in m.scalers()]
    with torch.no_grad():
        m(x2[:50])
    assert all(torch.equal(a, s.mean) for a, s in zip(frozen, m.scalers()))


def test_scaler_stats_momentum_one_keeps_the_latest_batch():
    m = small()
    x1, x2 = torch.randint(0, 256, (70, 2)), torch.randint(0, 256, (70, 2))
    m.scaler_stats(True, momentum=1.0)
    with torch.no_grad():
        m(x1)
        m(x2)
    last = {(s.layer, s.name): s.mean.clone() for s in m.scalers()}
    m.scaler_stats(True, momentum=1.0)
    with torch.no_grad():
        m(x2)
    assert all(torch.allclose(last[(s.layer, s.name)], s.mean) for s in m.scalers())


def test_learns_a_repeating_byte_pattern():
    """A few Adam steps through quantisers (straight-through) and the gain-cell attention
    lower the loss on a periodic text: the model trains end to end."""
    m = small(attention="linear_gaincell", window=64)
    text = torch.tensor(list(b"abcdefgh" * 24), dtype=torch.long)
    x, y = text[:-1].view(-1, 1), text[1:].view(-1, 1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits = st.unroll(m, x, strategy="checkpoint", segment=64)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
