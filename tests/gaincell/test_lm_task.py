"""language_model task: batch layout, per-token loss, ppl/bpc against a hand computation,
mergeable sums, online step loss equal to the offline loss."""
import math

import pytest
import torch

from spiketrain.trainer.tasks import get_task
from spiketrain.trainer.tasks.language_model import LanguageModel, Perplexity


def _batch(T=5, B=3, V=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (T, B), generator=g)
    return logits, targets


def _hand_nll(logits, targets):
    """Sum of -log softmax(logits)[target] over every token, written out by hand."""
    total = 0.0
    T, B, _ = logits.shape
    for t in range(T):
        for b in range(B):
            row = [float(v) for v in logits[t, b]]
            m = max(row)
            lse = m + math.log(sum(math.exp(v - m) for v in row))
            total += lse - row[int(targets[t, b])]
    return total, T * B


def test_registered_by_name_and_properties():
    task = get_task("language_model")
    assert isinstance(task, LanguageModel) and task.name == "language_model"
    assert task.main_metric == "ppl" and "ppl" in task.lower_is_better
    assert "bpc" in task.lower_is_better


def test_loss_is_mean_token_cross_entropy():
    logits, y = _batch()
    task = LanguageModel()
    total, n = _hand_nll(logits, y)
    loss = task.loss(None, logits, y)
    assert float(loss) == pytest.approx(total / n, rel=1e-12)


def test_ppl_and_bpc_against_hand_computation_and_merge():
    task = LanguageModel()
    parts = [_batch(seed=s, T=4 + s) for s in range(3)]
    whole = task.new_metrics()
    for logits, y in parts:
        whole.update(task.predict(None, logits), y)
    total = sum(_hand_nll(lg, y)[0] for lg, y in parts)
    count = sum(_hand_nll(lg, y)[1] for lg, y in parts)
    got = whole.compute()
    assert got["ppl"] == pytest.approx(math.exp(total / count), rel=1e-9)
    assert got["bpc"] == pytest.approx(total / count / math.log(2), rel=1e-9)
    # two "ranks" each see part of the data; merged sums give the same numbers
    r0, r1 = task.new_metrics(), task.new_metrics()
    r0.update(parts[0][0], parts[0][1])
    for lg, y in parts[1:]:
        r1.update(lg, y)
    r0.merge(r1.state_dict())
    assert r0.compute() == pytest.approx(got, rel=1e-12)
    # the ppl is token-weighted, not the mean of the batches' ppls
    per_batch = [math.exp(_hand_nll(lg, y)[0] / _hand_nll(lg, y)[1]) for lg, y in parts]
    assert got["ppl"] != pytest.approx(sum(per_batch) / 3, rel=1e-6)
    fresh = Perplexity()
    fresh.load_state_dict(whole.state_dict())
    assert fresh.compute() == pytest.approx(got)
    assert math.isnan(Perplexity().compute()["ppl"])


def test_uniform_logits_give_vocab_perplexity():
    task = LanguageModel()
    m = task.new_metrics()
    m.update(torch.zeros(6, 2, 256), torch.randint(0, 256, (6, 2)))
    assert m.compute()["ppl"] == pytest.approx(256.0)
    assert m.compute()["bpc"] == pytest.approx(8.0)


def test_online_step_loss_sums_to_the_offline_loss():
    logits, y = _batch(T=6, B=4)
    task = LanguageModel()
    x = torch.randint(0, 7, (6, 4))
    online = task.online(None, x, y)
    assert online.targets is y
    total = sum(online.step_loss(lg_t, y_t) for lg_t, y_t in zip(logits.unbind(0), y.unbind(0)))
    assert float(total * online.scale) == pytest.approx(float(task.loss(None, logits, y)),
                                                        rel=1e-12)
    assert task.online_predict(None, torch.zeros(4, 7)) is None


def test_split_and_shape_errors():
    task = LanguageModel()
    x, y = torch.zeros(5, 2, dtype=torch.int64), torch.zeros(5, 2, dtype=torch.int64)
    assert task.split((x, y)) == (x, y)
    with pytest.raises(ValueError, match=r"y \[T, B\]"):
        task.split((x, torch.zeros(2, dtype=torch.int64)))
    with pytest.raises(ValueError, match="int64"):
        task.split((x, y.float()))
    with pytest.raises(ValueError, match=r"logits \[T, B, V\]"):
        task.loss(None, torch.zeros(5, 7), y)


def test_token_logits_hook_and_vocab_check():
    class M:
        vocab_size = 100

        def token_logits(self, outputs):
            return outputs * 0

    class D:
        vocab_size = 256

    task = LanguageModel()
    logits, y = _batch(V=7)
    assert float(task.loss(M(), logits, y)) == pytest.approx(math.log(7))
    with pytest.raises(ValueError, match="vocab_size"):
        task.check(M(), D())
