"""The service stands alone: what it imports, and what its refusal metric says.

The serving install carries none of the load-testing, benchmarking or model-building
extras, so a module of service/ that imported loadtests/ or the tools under perfserve/
(the command line, the benchmarks, store building, staging) would break `perfserve serve`
there; read from the source, so a lazy import inside a function counts. The shared
helpers, perfserve/common/, are the one part of perfserve/ it may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from tests.utils.stack import ROOT

SERVICE = ROOT / "service"
TOOLS = {"loadtests", "competitors", "perfserve"}
SHARED = "perfserve.common"


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every import in the file, at module level or inside functions,
    leaving out the shared helpers."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in modules if not _shared(name)}
    return found


def _shared(module: str) -> bool:
    return module == SHARED or module.startswith(SHARED + ".")


def test_no_module_of_the_service_imports_the_tools_built_on_it() -> None:
    modules = sorted(SERVICE.rglob("*.py"))
    assert len(modules) > 10
    climbing = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & TOOLS) for path in modules
    }
    assert {path: tools for path, tools in climbing.items() if tools} == {}


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def run() -> None:\n    from loadtests.sweep import command\n")
    assert imported_packages(source) == {"loadtests"}


def test_the_shared_helpers_are_not_a_tool(tmp_path: Path) -> None:
    source = tmp_path / "shared.py"
    source.write_text("from perfserve.common.usage import UsageError\nimport perfserve.cli\n")
    assert imported_packages(source) == {"perfserve"}


def test_the_refusal_metric_names_every_reason_the_service_gives() -> None:
    reasons = set()
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Reject":
                reason = node.args[1]
                assert isinstance(reason, ast.Constant), ast.unparse(node)
                reasons.add(str(reason.value))
    assert "model_error" in reasons
    help_text = Metrics(CollectorRegistry()).rejected._documentation
    assert {reason for reason in reasons if reason not in help_text} == set()
