"""Hugging Face GPT-2 weights map into gaincell_gpt (softmax attention) with equal logits.
A tiny randomly initialised GPT2LMHeadModel is saved to a temporary folder and loaded from
there: nothing is downloaded."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from spiketrain.models.gaincell import from_hf_gpt2  # noqa: E402


def tiny_gpt2(tmp_path, **kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=80, n_embd=32, n_layer=2,
                                  n_head=4, **kw)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():   # non-trivial LayerNorms and biases
        for name, p in hf.named_parameters():
            if "ln" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    return hf


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_hf(tmp_path, tied):
    hf = tiny_gpt2(tmp_path, tie_word_embeddings=tied)
    if not tied:
        with torch.no_grad():
            hf.lm_head.weight.copy_(torch.randn_like(hf.lm_head.weight) * 0.05)
        hf.save_pretrained(tmp_path)
    model = from_hf_gpt2(tmp_path)           # from the folder, as a user would
    assert model.attention == "softmax" and model.window == 128
    tokens = torch.randint(0, 97, (3, 80), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(tokens).logits                          # [B, T, V]
        ours = model(tokens.t().contiguous())            # [T, B, V] time-major
    assert ours.shape == (80, 3, 97)
    assert torch.allclose(ours.transpose(0, 1), ref, atol=1e-4, rtol=1e-4), \
        (ours.transpose(0, 1) - ref).abs().max()
    # streaming the same tokens one at a time gives the same logits
    state, ys = model.init_state(3), []
    with torch.no_grad():
        for x_t in tokens.t().unbind(0):
            state, y = model.step(state, x_t)
            ys.append(y)
    assert torch.allclose(torch.stack(ys, 1), ref, atol=1e-4, rtol=1e-4)


def test_mapped_model_refuses_positions_beyond_gpt2s(tmp_path):
    tiny_gpt2(tmp_path)
    model = from_hf_gpt2(tmp_path)
    with pytest.raises(ValueError, match="n_positions"):
        model(torch.zeros(81, 1, dtype=torch.long))


def test_mapping_from_a_model_object_and_switching_kind(tmp_path):
    hf = tiny_gpt2(tmp_path)
    model = from_hf_gpt2(hf, attention="gaincell")
    assert model.attention == "gaincell"
    y = model(torch.randint(0, 97, (70, 2)))
    assert y.shape == (70, 2, 97) and torch.isfinite(y).all()


def test_unsupported_configuration_is_refused(tmp_path):
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                  activation_function="relu")
    with pytest.raises(ValueError, match="activation_function"):
        from_hf_gpt2(transformers.GPT2LMHeadModel(cfg))
