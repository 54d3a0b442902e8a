"""The service stands alone: what it imports, and what its refusal metric says.

The serving install carries none of the load-testing, benchmarking or model-building
extras, so a module of service/ that imported loadtests/ or perfserve/ (the command line,
the benchmarks, store building, staging) would break `perfserve serve` there; read from
the source, so a lazy import inside a function counts. The shared helpers it may use live
apart, in perfserve_common/.
"""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from tests.utils.stack import ROOT

SERVICE = ROOT / "service"
TOOLS = {"loadtests", "competitors", "perfserve"}
SERVICE_PARTS = {
    f"service.{name}" for name in ("state", "loading", "traffic", "canary", "request_metrics")
}
"""`Service` and the parts it composes, which the request path reaches only as `Serving`."""


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, at module level or inside functions (and, for
    `from package import name`, `package.name` too, in case the name is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every import in the file."""
    return {module.split(".")[0] for module in imported_modules(path)}


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


def test_the_request_path_sees_the_service_only_through_its_interface() -> None:
    """The prediction handler and the protocols' routes take the running service as a
    `Serving` (service/serving.py); the full `Service` in service/state.py and its parts
    are for the lifespan, the admin routes and rollouts."""
    request_path = [SERVICE / "predict.py", *sorted((SERVICE / "protocols").glob("*.py"))]
    reaching = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & SERVICE_PARTS)
        for path in request_path
    }
    assert {path: parts for path, parts in reaching.items() if parts} == {}
    assert "service.serving.Serving" in imported_modules(SERVICE / "predict.py")


def test_rollouts_import_nothing_of_the_http_layer_above_them() -> None:
    """service/rollout/ is the state machine and its shared folder; its `/rollout` routes
    live beside the other admin routes (service/rollout_routes.py), so the folder never
    reaches up to the app, its routes or `Service`."""
    above = {"service.app", "service.api", "service.admin", "service.rollout_routes"}
    above |= SERVICE_PARTS
    reaching = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & above)
        for path in sorted((SERVICE / "rollout").glob("*.py"))
    }
    assert {path: modules for path, modules in reaching.items() if modules} == {}
