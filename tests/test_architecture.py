"""Test the import rules of docs/design.md "Module layout", read from the source.

Imports only point to a lower layer; the pure layers 0-1 never import I/O, clock or
signal modules; nothing imports `app` or `cli` except the layer right above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "openai_cost_pusher"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: dict[str, int] = {
    "__init__": 0,  # the package itself: only `__version__`, imports nothing
    "errors": 0,
    "model": 0,
    "config": 1,
    "window": 1,
    "feed": 1,  # pure: buckets taken from their answers a day at a time
    "ledger": 1,
    "landing": 1,
    "metrics": 1,
    "exposition": 1,
    "jsonstream": 1,
    "parsers": 1,  # pure: decoded answers in, records out; openai_api does the I/O
    "transport": 2,
    "logs": 2,
    "heap": 2,  # returns the C heap's free pages to the system (ctypes)
    "batches": 2,  # pure: what results batches sent again added (metrics' tables)
    "spend_limits": 2,  # pure: spend answers in, records and samples out (metrics)
    "openai_api": 3,
    "push": 3,
    "demo": 3,
    "health": 3,
    "vmread": 3,
    "ports": 4,  # the protocols of the cycle's source, sink and reader: types only
    "cycle_report": 4,  # what one cycle did: pure records
    "report": 4,
    "clients": 4,  # the HTTP clients a command builds from its settings
    "spend_step": 5,  # the cycle's spend-limit step and its state
    "tables": 4,  # the tables' series numbers, labels and batches between cycles
    "key_names": 5,  # the API key names of the per-key series, and their state
    "verify": 5,  # reads VictoriaMetrics' days as report does (rows_from_series)
    "arguments": 5,  # the command line's grammar (report's days and formats)
    "demo_guard": 5,  # the demo's question to the store before it pushes
    "app": 6,  # the cycle and its loop
    "repair": 6,  # `verify --repair`: acts on what verify found
    "cli": 7,
    "__main__": 8,  # `python -m`: imports cli and nothing else
}
"""Layer of every module in the package (docs/design.md "Module layout")."""

PURE_BANNED = frozenset({"requests", "schedule", "tenacity", "os", "time", "signal"})
"""Modules layers 0-1 must not import: I/O, the clock, process signals."""

ALLOWED_IMPORTERS = {"app": {"cli"}, "cli": {"__main__"}}
"""The only modules that may import `app` and `cli`."""


def _package_modules() -> dict[str, Path]:
    """Return the package's module names and paths."""
    return {path.stem: path for path in sorted(PACKAGE_DIR.glob("*.py"))}


def imports_of(source: str, modules: set[str]) -> tuple[set[str], set[str]]:
    """Return (package modules, other top-level modules) imported anywhere in `source`.

    Nested imports (inside functions or `if TYPE_CHECKING:`) count too. A relative
    import or `from openai_cost_pusher import x` names module `x` where `x` is one,
    else the package itself (`__init__`).
    """
    inner: set[str] = set()
    outer: set[str] = set()

    def add_package(path: list[str], names: list[str]) -> None:
        if path:
            inner.add(path[0])
            return
        for name in names:
            inner.add(name if name in modules else "__init__")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    add_package(parts[1:], [])
                    if len(parts) == 1:
                        inner.add("__init__")
                else:
                    outer.add(parts[0])
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            parts = node.module.split(".") if node.module else []
            if node.level:
                add_package(parts, names)
            elif parts[0] == PACKAGE:
                add_package(parts[1:], names)
            else:
                outer.add(parts[0])
    return inner, outer


MODULES = _package_modules()
IMPORTS = {
    name: imports_of(path.read_text(encoding="utf-8"), set(MODULES))
    for name, path in MODULES.items()
}


def test_every_module_has_a_layer() -> None:
    """Each module of the package is placed in the layer table, and only those."""
    assert set(MODULES) == set(LAYERS)


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_point_to_lower_layers(module: str) -> None:
    """A module imports only package modules of a strictly lower layer."""
    inner, _ = IMPORTS[module]
    upward = {m: LAYERS[m] for m in inner if LAYERS[m] >= LAYERS[module]}
    assert upward == {}, f"{module} (layer {LAYERS[module]}) imports {upward}"


@pytest.mark.parametrize("module", sorted(m for m, n in LAYERS.items() if n <= 1))
def test_pure_layers_import_no_io(module: str) -> None:
    """Layers 0-1 never import requests, schedule, tenacity, os, time or signal."""
    _, outer = IMPORTS[module]
    assert outer & PURE_BANNED == set()


@pytest.mark.parametrize("target", sorted(ALLOWED_IMPORTERS))
def test_app_and_cli_imported_only_from_above(target: str) -> None:
    """Only cli imports app, and only __main__ imports cli."""
    importers = {m for m, (inner, _) in IMPORTS.items() if target in inner}
    assert importers <= ALLOWED_IMPORTERS[target]


def test_main_runs_cli() -> None:
    """`python -m openai_cost_pusher` goes through cli."""
    assert IMPORTS["__main__"][0] == {"cli"}


def test_errors_and_init_import_nothing_from_the_package() -> None:
    """The exception tree and the package root import no package module."""
    assert IMPORTS["errors"][0] == set()
    assert IMPORTS["__init__"][0] == set()


@pytest.mark.parametrize(
    ("source", "inner", "outer"),
    [
        ("import os.path", set(), {"os"}),
        ("from time import monotonic", set(), {"time"}),
        ("def f():\n    import requests", set(), {"requests"}),
        ("from openai_cost_pusher.app import Pusher", {"app"}, set()),
        ("import openai_cost_pusher.cli", {"cli"}, set()),
        ("import openai_cost_pusher", {"__init__"}, set()),
        ("from openai_cost_pusher import __version__", {"__init__"}, set()),
        ("from openai_cost_pusher import app, model", {"app", "model"}, set()),
        ("from . import app", {"app"}, set()),
        ("from .metrics import DAILY_COST", {"metrics"}, set()),
        (
            "if TYPE_CHECKING:\n    from openai_cost_pusher.push import X",
            {"push"},
            set(),
        ),
    ],
)
def test_import_reader_sees_every_form(
    source: str, inner: set[str], outer: set[str]
) -> None:
    """The checker itself sees plain, from, nested and relative imports."""
    assert imports_of(source, set(LAYERS)) == (inner, outer)
