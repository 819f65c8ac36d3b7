"""docs/config.md, generated from the settings' descriptions: every key, its type, default and meaning.

    python -m shoptalk.config.docs docs/config.md    # write it (from a source checkout)
    python -m shoptalk.config.docs                   # print it

The descriptions in `shoptalk.config` are the one place a key is explained;
tests/config/test_config_docs.py fails when docs/config.md no longer matches them.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shoptalk.config.root import ShoptalkConfig
from shoptalk.config.train import RECIPES, TrainSettings, keys_of, recipes_reading

COMMAND = "python -m shoptalk.config.docs docs/config.md"
INTRO = f"""# `shoptalk.yaml` reference

Every key of a project's `shoptalk.yaml`: its type, default and what it does.
Every key is optional; the defaults work as they are, so a new project needs
only `sources`. A key that is not listed here is an error that names it, never
a setting silently ignored. `null` means none.

This page is generated from the descriptions in `src/shoptalk/config/` by
`{COMMAND}`: change a description there, not here
(tests/config/test_config_docs.py fails when this page is stale).
"""
BOUNDS = {
    annotated_types.Ge: ("≥", "ge"),
    annotated_types.Gt: (">", "gt"),
    annotated_types.Le: ("≤", "le"),
    annotated_types.Lt: ("<", "lt"),
}


def render() -> str:
    """The whole page."""
    parts = [INTRO]
    parts += section("", "Top level", ShoptalkConfig, "The keys at the top of the file.")
    return "\n".join(parts)


def section(path: str, title: str, model: type[BaseModel], intro: str) -> list[str]:
    """One section's table, then each of its sub-sections, in the order of the fields."""
    lines = [f"## {title}", "", intro, ""]
    if model is TrainSettings:
        lines += recipe_table()
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    below: list[list[str]] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        lines.append(row(key, field, model))
        sub = submodel(field.annotation)
        if sub is not None:
            list_of = typing.get_origin(field.annotation) is list
            sub_path = f"{key}[]" if list_of else key
            intro = f"`{key}`: {field.description}"
            if list_of:
                intro = f"The keys of each entry of `{key}` ({field.description})"
            below.append(section(sub_path, f"`{sub_path}`", sub, intro))
    lines.append("")
    return lines + [line for block in below for line in block]


def recipe_table() -> list[str]:
    """Which `train` keys each recipe reads: one set of keys per recipe, in one YAML section."""
    every = list(TrainSettings.model_fields)
    lines = [
        "Each recipe reads only some of these keys (marked *recipes* below). A key set "
        "to anything but its default that the chosen `train.recipe` does not read is an "
        "error naming the key and the recipe. DPO runs in one process: a multi-process "
        "launch (torchrun, `accelerate launch`) of the `dpo` recipe, or of `sft` with "
        "`sources.preferences` (its last stage is DPO), is refused.",
        "",
        "| recipe | does not read |",
        "| --- | --- |",
    ]
    for recipe in RECIPES:
        unread = [f"`{k}`" for k in every if k not in keys_of(recipe)]
        lines.append(f"| `{recipe}` | {', '.join(unread) or 'reads every key'} |")
    return [*lines, ""]


def row(key: str, field: FieldInfo, model: type[BaseModel]) -> str:
    kind = type_name(field.annotation)
    limits = bounds(field.metadata)
    if limits:
        kind += f", {limits}"
    description = field.description or ""
    if submodel(field.annotation) is not None:
        description += f" (see `{key}` below)"
    if model is TrainSettings and set(recipes_reading(field)) != set(RECIPES):
        description += f" *(recipes: {', '.join(recipes_reading(field))})*"
    cells = [f"`{key}`", kind, default_of(field), description]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (alone, optional, or as a list), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = submodel(arg)
        if found is not None:
            return found
    return None


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is Annotated:
        inner = type_name(args[0])
        limits = bounds(
            [m for info in args[1:] if isinstance(info, FieldInfo) for m in info.metadata]
        )
        return f"{inner} ({limits})" if limits else inner
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is list:
        return "list of sections" if submodel(args[0]) else f"list of {type_name(args[0])}"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def bounds(metadata: list[Any]) -> str:
    """A field's limits as people write them: `≥ 0, < 1`, or the pattern a string must match."""
    found = []
    for item in metadata:
        if type(item) in BOUNDS:
            sign, attr = BOUNDS[type(item)]
            found.append(f"{sign} {getattr(item, attr):g}")
        elif getattr(item, "pattern", None):
            found.append(f"matching `{item.pattern}`")
    return ", ".join(found)


def default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def main(argv: list[str]) -> None:
    text = render()
    if not argv:
        sys.stdout.write(text)
        return
    target = Path(argv[0])
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


if __name__ == "__main__":
    main(sys.argv[1:])
