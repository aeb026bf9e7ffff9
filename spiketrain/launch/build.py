"""Objects from a validated :class:`~spiketrain.launch.config.Config`: model, data, Trainer.

A distributed worker calls the same functions (``build_model``, ``build_data``,
``trainer_kwargs``) so local and Ray runs train the same thing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config, ConfigError


def build_model(cfg: Config):
    """The model of ``cfg.model`` (registered name or class path, with its keyword arguments)."""
    from .. import models

    try:
        return models.build(cfg.model.target, **cfg.model.kwargs)
    except ValueError as e:
        raise ConfigError(f"model: {' '.join(str(e).split())}") from None
    except (KeyError, TypeError) as e:   # an option value the model does not know
        raise ConfigError(f"model {cfg.model.target!r} rejected its options "
                          f"({type(e).__name__}: {' '.join(str(e).split())}); check the "
                          f"model.* values") from None


def build_data(cfg: Config):
    """``(train_ds, test_ds)`` of ``cfg.data`` (the builder of its ``data.kind``); a file
    that cannot be read or written (a data file, ``data.cache_dir``) is one ConfigError line."""
    from ..data.kinds import get_data_kind

    try:
        return get_data_kind(getattr(cfg.data, "kind", "synthetic")).build(cfg.data)
    except OSError as e:
        where = e.filename or getattr(cfg.data, "path", None) or ""
        cache = getattr(cfg.data, "cache_dir", None)
        hint = (f"; set data.cache_dir to a writable folder (now {cache!r})"
                if cache and str(where).startswith(str(cache).rstrip("/")) else "")
        raise ConfigError(f"data: {where}: {e.strerror or type(e).__name__}{hint}") from None


def default_run_dir(cfg: Config) -> Path:
    """``runs/<config-stem>-<YYYYmmdd-HHMMSS-microseconds>-<4 hex>`` (unique, not created)."""
    from .run_folder import unique_run_dir
    return unique_run_dir(cfg.stem)


def trainer_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of :class:`spiketrain.trainer.Trainer` from the config."""
    t = cfg.trainer
    return dict(strategy=cfg.strategy.build(), task=cfg.task.build(),
                optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay, epochs=t.epochs,
                batch_size=t.batch_size, clip_grad=t.clip_grad, hardware=cfg.hardware,
                workers=t.workers, engine=t.engine, seed=t.seed, deterministic=t.deterministic,
                progress=t.progress, snapshot_every=t.snapshot_every, threads=t.threads,
                on_nonfinite=t.on_nonfinite,
                loader_options={"sparse": bool(getattr(cfg.data, "sparse", False))})


def build_trainer(cfg: Config, out_dir: str | Path | None = None, resume: str | Path | None = None,
                  **overrides: Any):
    """Seed, build model and data, and return a ready :class:`~spiketrain.trainer.Trainer`."""
    from ..trainer import Trainer, seed_everything

    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    model = build_model(cfg)
    data = build_data(cfg)
    out = Path(out_dir or cfg.trainer.out_dir or default_run_dir(cfg))
    kw = trainer_kwargs(cfg)
    kw.update(overrides)
    trainer = Trainer(model, data, out_dir=out, resume=resume, **kw)
    trainer.config = cfg
    if getattr(cfg.trainer, "tensorboard", False):
        from ..trainer.tensorboard import TensorBoardLogger
        trainer.add_callback(TensorBoardLogger())   # OUT/tensorboard (and OUT_URI/tensorboard)
    return trainer
