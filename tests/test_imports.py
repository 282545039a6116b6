"""Who may import whom (docs/ARCHITECTURE.md), read from the source with ast, no exemptions.

The core (tagdistill/) imports none of the rest and stays usable without the service stack.
The API (service/) and the workers (worker/) each depend on the core and on jobstore/, the
package they share, and never on each other; jobstore/ depends on neither of them.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_STACK = {"fastapi", "starlette", "uvicorn", "sse_starlette", "celery", "kombu", "redis",
                 "pydantic_settings"}
WEB = {"fastapi", "starlette", "uvicorn", "sse_starlette"}


def imports(package: str) -> list[tuple[str, str]]:
    """(file, top-level module) for every absolute import in the package's files, nested ones too
    (an import inside a function counts as much as one at the top)."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files in {package}/"
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:  # not an import, or a relative one (inside its own package)
                continue
            found += [(path.relative_to(ROOT).as_posix(), name.split(".")[0]) for name in names]
    return found


def offenders(package: str, forbidden: set[str]) -> list[str]:
    return [f"{file}: {module}" for file, module in imports(package) if module in forbidden]


def test_the_scan_sees_the_imports_that_are_allowed() -> None:
    """Guards the tests below against passing because they see nothing."""
    assert {"jobstore", "tagdistill", "fastapi"} <= {m for _, m in imports("service")}
    assert {"jobstore", "tagdistill", "celery"} <= {m for _, m in imports("worker")}
    assert {"tagdistill", "redis"} <= {m for _, m in imports("jobstore")}


def test_core_imports_no_service_stack() -> None:
    assert offenders("tagdistill", SERVICE_STACK) == []


def test_core_imports_neither_the_api_nor_the_workers_nor_jobstore() -> None:
    assert offenders("tagdistill", {"service", "worker", "jobstore"}) == []


def test_service_does_not_import_worker() -> None:
    assert offenders("service", {"worker"}) == []


def test_worker_does_not_import_service() -> None:
    assert offenders("worker", {"service"}) == []


def test_jobstore_imports_neither_service_nor_worker() -> None:
    assert offenders("jobstore", {"service", "worker"}) == []


def test_jobstore_imports_no_web_framework() -> None:
    """The workers use jobstore too, and need no web server."""
    assert offenders("jobstore", WEB) == []
