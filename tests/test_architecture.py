"""The layer rule, checked on the source: no import cycles, nothing imports upward.

    trainer/, trialkit/        the bottom: import nothing of ours
    search_spaces/             may import trialkit/ (the error root)
    backends/, vertex_emulator/  may import search_spaces/ and trialkit/; neither sees the other
    dualtune/                  the top: may import everything below

The Vertex emulator is a service beside the backends: no backend imports it, and it imports
no backend. Within backends/, neither backend imports the other; the MLflow recorder imports
no reader (report, compare, ui, display). argparse lives in the CLI module only. Every import
counts, the lazy ones inside functions too: a cycle through a function-level import is still a
cycle. The flow (dualtune/) reaches a backend only through backends.registry and backends.base:
it names no backend's package (the CLI's edge excepted) and asks the contract instead of probing
settings or backends with hasattr.

MLflow's layout has one home, dualtune/mlflow_layout.py: no other module of a package spells a
`dualtune.` tag key in a string (the tests do, on purpose: they pin what stores hold).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("trainer", "trialkit", "search_spaces", "backends", "vertex_emulator", "dualtune")
LAYER = {
    "trainer": 0,
    "trialkit": 0,
    "search_spaces": 1,
    "backends": 2,
    "vertex_emulator": 2,
    "dualtune": 3,
}
# Same-layer packages (and modules) that must not see each other.
FORBIDDEN = {
    ("trainer", "search_spaces"),
    ("search_spaces", "trainer"),
    ("backends.vertex", "vertex_emulator"),
    ("backends.vertex", "backends.local"),
    ("backends.local", "backends.vertex"),
    ("backends.local", "vertex_emulator"),
    # The MLflow writer and the layout it writes see none of the readers.
    *(
        (writer, reader)
        for writer in ("dualtune.mlflow_recorder", "dualtune.mlflow_layout")
        for reader in ("dualtune.report", "dualtune.compare", "dualtune.ui", "dualtune.display")
    ),
}
# dualtune's command line, and the example trainer's own (its flags ARE the trial contract).
CLI_MODULES = {"dualtune.cli", "trainer.flags", "trainer.task"}
LAYOUT_MODULE = "dualtune.mlflow_layout"  # the one module that spells dualtune's MLflow tags
# `dualtune.<name>` anywhere in a string, or the bare prefix ending one (f"dualtune.{key}");
# a module of ours (dualtune.cli) is not a tag key.
TAG_KEY = re.compile(r"(?<!\w)dualtune\.(?:[a-z_][a-z0-9_]*|$)")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }


def _imports(path: Path, module: str) -> set[str]:
    """Every module name an import statement in the file names, resolved to absolute."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (a name that is a package attribute, such as
    `from backends.vertex import VertexBackend`, counts as the package)."""
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        targets = {name for name in _imports(path, module) if name in sources}
        graph[module] = targets - {module}
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_import_goes_upward_or_sideways() -> None:
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            if LAYER[_top(target)] > LAYER[_top(module)]:
                bad.append(f"{module} imports {target} (upward)")
            for source, forbidden in FORBIDDEN:
                if _within(module, source) and _within(target, forbidden):
                    bad.append(f"{module} imports {target} ({source} must not see {forbidden})")
    assert not bad, "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between a package's __init__ and its modules collapsed: importing a
    package's own submodule from its __init__ is how a package exports, not a cycle."""
    return {
        module: {t for t in targets if not _within(module, t) and not _within(t, module)}
        for module, targets in graph.items()
    }


def test_no_import_cycles() -> None:
    cycles = _cycles(_package_graph(_graph()))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_argparse_only_in_the_cli() -> None:
    users = sorted(m for m, p in _sources().items() if "argparse" in _imports(p, m))
    assert set(users) <= CLI_MODULES, f"argparse imported outside the CLI: {users}"


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path) -> None:
    """The rule's own test: a planted cycle and an upward import are found."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}
    assert _cycles(graph) == [["a.x", "a.y"]]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from dualtune.cli import main\n    from . import sibling\n")
    assert {"dualtune.cli", "dualtune.cli.main"} <= _imports(source, "backends.local.m")
    assert "backends.local.sibling" in _imports(source, "backends.local.m")


def _tag_keys(path: Path, modules: set[str]) -> list[str]:
    """`line: text` of every `dualtune.<key>` the file's strings (docstrings and f-string
    parts included) spell that is not one of `modules`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in TAG_KEY.finditer(node.value):
                if match.group(0) not in modules:
                    found.append(f"{node.lineno}: {match.group(0)}")
    return found


def _api_names() -> set[str]:
    """`dualtune.<name>` of every name the package exports (dualtune.emulator_settings...):
    the Python API, not tag keys."""
    import dualtune

    return {f"dualtune.{name}" for name in dualtune.__all__}


def test_only_the_layout_module_spells_a_tag_key() -> None:
    """Every package and the benchmarks; the tests are left out (they pin the layout)."""
    sources = _sources()
    scanned = {**sources, **{_module_name(p): p for p in (REPO / "benchmarks").rglob("*.py")}}
    bad = [
        f"{path.relative_to(REPO)}:{hit}"
        for module, path in sorted(scanned.items())
        if module != LAYOUT_MODULE
        for hit in _tag_keys(path, set(sources) | _api_names())
    ]
    assert not bad, "dualtune tag keys outside dualtune/mlflow_layout.py:\n" + "\n".join(bad)


def test_the_checker_sees_a_planted_tag_key(tmp_path) -> None:
    """The rule's own test: a key in a plain string, in a docstring, in a filter inside an
    f-string, and the bare prefix a key is built from are found; a module name is not; the
    layout module itself spells the keys."""
    source = tmp_path / "m.py"
    source.write_text(
        '"""Reads the `dualtune.space` tag."""\n'
        "import logging\n"
        'log = logging.getLogger("dualtune.report")\n'
        'ROLE = "dualtune.role"\n'
        "def f(study):\n"
        "    return f\"tags.dualtune.study = '{study}'\", f'dualtune.{study}'\n"
    )
    hits = _tag_keys(source, {"dualtune.report"})
    assert hits == ["1: dualtune.space", "4: dualtune.role", "6: dualtune.study", "6: dualtune."]
    layout = _sources()[LAYOUT_MODULE]
    assert {"dualtune.role", "dualtune.study", "dualtune.trial_id"} <= {
        hit.split(": ")[1] for hit in _tag_keys(layout, set())
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_parsed(package: str) -> None:
    assert any(m.startswith(package) for m in _graph()), package


# -- the backend contract (backends/base.py): the flow asks it, never a backend --------------
# Where typed settings are built from flags or named for a notebook: the only dualtune modules
# that may name a backend's own package (emulator_client: an emulator URL -> VertexSettings).
EDGE_MODULES = {"dualtune", "dualtune.cli", "dualtune.emulator_client"}


def _backend_packages() -> set[str]:
    """The package of every registered backend (backends.local, backends.vertex...)."""
    from backends.registry import BACKENDS

    return {e.backend_path.partition(":")[0].rpartition(".")[0] for e in BACKENDS.values()}


def test_the_flow_reaches_backends_only_through_the_registry() -> None:
    packages = _backend_packages()
    assert packages >= {"backends.local", "backends.vertex"}
    bad = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _top(module) == "dualtune" and module not in EDGE_MODULES
        for target in targets
        if any(_within(target, package) for package in packages)
    ]
    assert not bad, "\n".join(sorted(bad)) + "\n(ask backends.registry / backends.base instead)"


def _probes(path: Path) -> list[str]:
    """hasattr(...) calls whose object mentions settings or a backend: duck typing where the
    contract (BackendSettings, JobBackend, BackendEntry.submits_jobs) should be asked."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
            subject = ast.unparse(node.args[0]) if node.args else ""
            if "settings" in subject or "backend" in subject or "built" in subject:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_flow_duck_types_no_settings_or_backend() -> None:
    flow = sorted((REPO / "dualtune").glob("*.py"))
    assert flow, "dualtune/ not found"
    bad = [probe for path in flow for probe in _probes(path)]
    api = (REPO / "dualtune" / "api.py").read_text(encoding="utf-8")
    assert "hasattr(" not in api, "dualtune/api.py probes with hasattr: ask the contract"
    assert not bad, "\n".join(bad)


def test_the_probe_checker_sees_a_probe(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text("if hasattr(settings, 'resolve'):\n    pass\nhasattr(store, 'x')\n")
    assert _probes(source) == ["m.py:1: hasattr(settings, 'resolve')"]
