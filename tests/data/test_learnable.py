"""The default synthetic task is learnable: a linear read of spike counts beats chance by far,
while classes sharing bands in a different order (n_bands) need more than counts."""
import torch

from spiketrain.data import DataConfig, SpikeLoader, build_datasets


def _count_features(ds, n_windows=1):
    """Spike counts per channel (and per time window): [n, n_windows * n_in]."""
    loader = SpikeLoader(ds, 256, shuffle=False)
    feats, labels = [], []
    for x, y in loader:
        T, B, N = x.shape
        f = x.reshape(n_windows, T // n_windows, B, N).sum(1)
        feats.append(f.permute(1, 0, 2).reshape(B, -1))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def _logreg_accuracy(train, test, n_classes, steps=200):
    """Test accuracy of logistic regression (Adam, full batch). One thread: these matrices are
    tiny and thread hand-offs dominate on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(train, test, n_classes, steps)
    finally:
        torch.set_num_threads(threads)


def _fit(train, test, n_classes, steps):
    (xtr, ytr), (xte, yte) = train, test
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    torch.manual_seed(0)
    lin = torch.nn.Linear(xtr.shape[1], n_classes)
    opt = torch.optim.Adam(lin.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        return (lin(xte).argmax(1) == yte).float().mean().item()


def test_default_synthetic_is_learnable_from_counts(tmp_path):
    cfg = DataConfig(n_train=400, n_test=200, cache_dir=str(tmp_path))   # defaults otherwise
    train, test = build_datasets(cfg)
    assert 0.01 <= train.rate <= 0.04                    # SHD-like input rate
    acc = _logreg_accuracy(_count_features(train), _count_features(test), cfg.n_classes)
    print(f"logistic regression on spike counts: test accuracy {acc:.3f} (chance 0.05)")
    assert acc >= 0.8


def test_shared_bands_need_time(tmp_path):
    # 4 classes = the same 3 bands in 4 different orders: counts carry no class information,
    # counts per time window do.
    cfg = DataConfig(n_train=400, n_test=200, n_classes=4, n_bands=3, n_in=60, band_width=10,
                     cache_dir=str(tmp_path), channel_jitter=0)
    train, test = build_datasets(cfg)
    acc_counts = _logreg_accuracy(_count_features(train), _count_features(test), 4)
    acc_time = _logreg_accuracy(_count_features(train, 10), _count_features(test, 10), 4)
    print(f"shared bands: counts {acc_counts:.3f}, counts per time window {acc_time:.3f}")
    assert acc_counts < 0.45 and acc_time > 0.7
