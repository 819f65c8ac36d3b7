"""`shoptalk init`: write a shoptalk.yaml that works as is."""

from __future__ import annotations

import os
from pathlib import Path

from shoptalk.artifacts import write_atomic
from shoptalk.config import CONFIG_NAME, ShoptalkConfig, Sources, dump_config
from shoptalk.errors import ConfigError
from shoptalk.modeling.load import resolve_base_model


def relative(path: str, root: Path) -> str:
    """Store paths relative to the project folder so the project can move."""
    absolute = Path(path).expanduser().resolve()
    if not absolute.exists():
        raise ConfigError(f"{path}: file or folder not found")
    return Path(os.path.relpath(absolute, root.resolve())).as_posix()


def init_project(
    root: Path,
    docs: list[str],
    faq: list[str],
    conversations: list[str],
    questions: list[str],
    name: str = "My organization",
    base_model: str = "default",
) -> Path:
    """Create `root/shoptalk.yaml`; never overwrites an existing one."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / CONFIG_NAME
    if target.exists():
        raise ConfigError(f"{target} already exists; edit it, or remove it to start over.")
    if base_model != "default":
        resolve_base_model(base_model, root)
    cfg = ShoptalkConfig(
        name=name,
        system_prompt=f"You are the assistant of {name}. Answer with {name}'s facts; "
        "if you do not know, say so.",
        base_model=base_model,
        sources=Sources(
            docs=[relative(p, root) for p in docs],
            faq=[relative(p, root) for p in faq],
            conversations=[relative(p, root) for p in conversations],
            questions=[relative(p, root) for p in questions],
        ),
    )
    header = (
        "# shoptalk project. Every key, with its type, default and meaning: docs/config.md in\n"
        "# shoptalk's documentation, or run `python -m shoptalk.config.docs`.\n"
    )
    write_atomic(target, header + dump_config(cfg))
    return target
