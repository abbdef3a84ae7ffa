"""The shape of the package: no import circle, modules of a readable size, no backend identity outside backends/.

Imports are read from the source: every ``import`` a module makes, at top level, inside a function (a lazy import
is still a dependency) or under ``if TYPE_CHECKING:`` (a type named in a signature is a dependency of meaning).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aurora_kit"
MAX_LINES = 600
#: modules allowed past MAX_LINES, each with the reason
LONG_MODULES: dict[str, str] = {
    "aurora_kit.rules": "one home per Aurora rule (a test forbids defining one elsewhere): they stay together",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    out.add(full)
                elif base in known:
                    out.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_check_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_600_lines_unless_justified() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and name not in LONG_MODULES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


BACKEND_IDENTITY = re.compile(r"""(\.backend|\bbackend|\.name)\s*[!=]=\s*["'](local|aws)["']""")


def test_no_backend_identity_comparison_outside_backends() -> None:
    """Steps and checks ask the backend (``traits``, ``unreachable_hint``...), never compare its name."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith("aurora_kit.backends"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if BACKEND_IDENTITY.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_the_identity_check_catches_the_usual_spellings() -> None:
    for line in ('if run.params.backend == "local":', "if p.backend != 'aws':", 'backend.name == "local"'):
        assert BACKEND_IDENTITY.search(line)
