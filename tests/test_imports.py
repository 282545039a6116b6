"""The ML core must stay importable without the service stack."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "tagdistill"
FORBIDDEN = {"fastapi", "celery", "redis", "starlette", "uvicorn", "service", "worker"}


def test_core_imports_no_service_stack():
    offenders = []
    for path in CORE.rglob("*.py"):
        if path.name == "cli.py":
            continue  # `tagdistill up` starts the service, importing it lazily inside the command
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
