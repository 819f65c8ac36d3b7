"""The layering rules of docs/architecture.md, checked on every import in src/.

Every import counts, including those inside functions and under TYPE_CHECKING:
a late import is still a dependency a reader has to follow. There is no
exceptions list; a rule that the code needs to break is a rule to change here
and in docs/architecture.md, with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "shoptalk"

# What a layer may not import. A layer is the first name under shoptalk.
STAGES = {"data", "train", "eval", "rag", "export", "serve", "jobs", "pipeline", "cli"}
# Only the CLI (the outermost layer) and the pipeline (which runs the stages in order)
# see every stage; nothing below them imports either.
OUTER = {"pipeline", "cli"}
FORBIDDEN: dict[str, set[str]] = {
    "data": STAGES - {"data"},
    "train": STAGES - {"train", "data"},
    "eval": {"train", "export", "serve", "jobs"} | OUTER,
    "rag": {"train", "eval", "export", "serve", "jobs"} | OUTER,
    "export": {"train", "serve", "jobs"} | OUTER,
    "serve": {"train", "cli"},
    "jobs": {"serve", "cli"},
    "pipeline": {"serve", "jobs", "cli"},
    # The shared base: what every stage stands on imports no stage.
    "modeling": STAGES,
    "config": STAGES,
    "registry": STAGES,
    "records": STAGES,
    "errors": STAGES,
    "artifacts": STAGES,
    "project": STAGES,
    "text": STAGES,
    "progress": STAGES,
    "memory": STAGES,
}
# serve may start pipeline work only through the pipeline's public face.
PUBLIC_ONLY = {("serve", "pipeline")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def imported(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """Every shoptalk module an AST imports, resolved to the deepest module that exists."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from shoptalk.train import sft` imports the module shoptalk.train.sft;
            # `from shoptalk.train.sft import run` the module shoptalk.train.sft.
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != PACKAGE:
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: imported(ast.parse(path.read_text(encoding="utf-8")), known) - {name}
        for name, path in known.items()
    }


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package must be placed in the rules above."""
    layers = {layer(m) for m in modules()} - {""}
    assert layers <= set(FORBIDDEN) | {"cli"}, sorted(layers - set(FORBIDDEN) - {"cli"})


def test_no_forbidden_import() -> None:
    broken = []
    for module, targets in graph().items():
        for target in targets:
            a, b = layer(module), layer(target)
            if a == b:
                continue
            if b in FORBIDDEN.get(a, set()):
                broken.append(f"{module} -> {target}")
            elif (a, b) in PUBLIC_ONLY and target != f"{PACKAGE}.{b}":
                broken.append(f"{module} -> {target} (only {PACKAGE}.{b} itself)")
    assert not broken, "imports against the layering:\n" + "\n".join(sorted(broken))


def test_no_import_cycle() -> None:
    edges = graph()
    cycles = strongly_connected(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components of more than one module are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_late_import(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    from shoptalk.train import sft\n")
    known = {"shoptalk.train": Path(), "shoptalk.train.sft": Path()}
    assert imported(tree, known) == {"shoptalk.train.sft"}


def test_the_checker_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
