"""Launch: CLI, config schema (YAML + dotted overrides), builders shared with distributed runs."""
from .config import (Config, ConfigError, ModelSpec, StrategySpec, TrainerSection, load_config,
                     register_section, validate)

__all__ = ["Config", "ConfigError", "ModelSpec", "StrategySpec", "TrainerSection", "load_config",
           "register_section", "validate"]
