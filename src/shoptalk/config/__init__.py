"""The one config file, `shoptalk.yaml`, as pydantic models: one module per section.

Every model is closed (`extra="forbid"`): a misspelt key is an error that names
it, never a silently ignored setting. Defaults work as they are. Every key has
a description; docs/config.md is generated from them (`python -m
shoptalk.config.docs`). This package imports no stage, and reading a config
imports neither numpy, httpx nor torch.
"""

from shoptalk.config.data import (
    BUILTIN_REPLAY,
    BUILTIN_REPLAY_SOURCES,
    DEFAULT_REPLAY_FILES,
    CleanSettings,
    DataSettings,
    DedupeSettings,
    PiiSettings,
    ReplaySettings,
    SynthSettings,
    TeacherSettings,
)
from shoptalk.config.eval import EvalSettings, GateRule, GateSettings, JudgeSettings
from shoptalk.config.load import CONFIG_NAME, describe_validation_error, dump_config, load_config
from shoptalk.config.rag import RaftSettings, RagSettings, SelectSettings
from shoptalk.config.root import ShoptalkConfig
from shoptalk.config.serve import ServeSettings
from shoptalk.config.sources import Sources
from shoptalk.config.train import (
    DpoSettings,
    LoraSettings,
    TrainSettings,
    check_launch,
    refuse_dpo_processes,
    world_size,
)

__all__ = [
    "BUILTIN_REPLAY",
    "BUILTIN_REPLAY_SOURCES",
    "CONFIG_NAME",
    "DEFAULT_REPLAY_FILES",
    "CleanSettings",
    "DataSettings",
    "DedupeSettings",
    "DpoSettings",
    "EvalSettings",
    "GateRule",
    "GateSettings",
    "JudgeSettings",
    "LoraSettings",
    "PiiSettings",
    "RaftSettings",
    "RagSettings",
    "ReplaySettings",
    "SelectSettings",
    "ServeSettings",
    "ShoptalkConfig",
    "Sources",
    "SynthSettings",
    "TeacherSettings",
    "TrainSettings",
    "check_launch",
    "describe_validation_error",
    "dump_config",
    "load_config",
    "refuse_dpo_processes",
    "world_size",
]
