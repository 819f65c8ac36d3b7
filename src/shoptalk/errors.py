"""Errors a user can act on. Library code raises these; only the CLI exits."""

from __future__ import annotations

from pathlib import Path


class ShoptalkError(Exception):
    """Base class: the message is a complete, one-paragraph explanation."""


class SourceError(ShoptalkError):
    """A problem in one of the user's source files, pointing at file and line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(ShoptalkError):
    """A problem in shoptalk.yaml, naming the key."""


class ModelError(ShoptalkError):
    """The base model cannot be resolved or loaded."""


class MissingExtraError(ShoptalkError):
    """An optional dependency is missing; the message says how to install it."""
