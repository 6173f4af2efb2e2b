"""The package layout (docs/architecture.md): stages import only from below, no import circle, small files.

The layer contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and is checked with import-linter,
which sees every import, including those inside functions. Circles are found on the same import graph
(grimp) with networkx.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "s2mnet"
MAX_LINES = 500

importlinter = pytest.importorskip("importlinter", reason="import-linter is a dev dependency")


def test_stages_import_only_from_below() -> None:
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_import_circle() -> None:
    import grimp
    import networkx as nx

    graph = grimp.build_graph("s2mnet", cache_dir=None)
    edges = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    circles = [sorted(group) for group in nx.strongly_connected_components(edges) if len(group) > 1]
    assert circles == []


def test_models_and_losses_stand_alone() -> None:
    """The network and the loss stand alone: they import only torch, MONAI, the errors and the registry."""
    import grimp

    graph = grimp.build_graph("s2mnet", cache_dir=None)
    for package in ("s2mnet.models", "s2mnet.losses"):
        for module in graph.find_children(package) | {package}:
            for imported in graph.find_modules_directly_imported_by(module):
                assert imported.startswith((package, "s2mnet.errors", "s2mnet.registry")), (
                    f"{module} imports {imported}"
                )


def test_no_source_file_over_500_lines() -> None:
    long = {
        str(path.relative_to(SOURCE)): count
        for path in SOURCE.rglob("*.py")
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_sources_cite_nothing_outside_the_repository() -> None:
    """Docstrings cite the paper's sections or docs/, never a file that is not in the repository."""
    pattern = re.compile(r"PAPER\.md|issue \d")
    offenders = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in SOURCE.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
