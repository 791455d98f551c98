"""Dependencies point down (ARCHITECTURE §1, DECISIONS 23): checked by reading imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOTS = {"realtime/server.py", "realtime/cli.py", "realtime/__main__.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def uses(names: set[str], top: str) -> bool:
    return any(n == top or n.startswith(top + ".") for n in names)


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("compat_sse", ()),
        ("starlette", ("realtime/transport/",)),
        ("uvicorn", ("realtime/transport/",)),
        ("redis", ("realtime/broker/",)),
        ("openai", ("realtime/agent/openai_provider.py",)),
        ("httpx2", ("realtime/agent/openai_provider.py",)),
        ("realtime.transport", ("realtime/transport/",)),
    ],
)
def test_core_imports_stay_in_their_layer(library: str, allowed: tuple[str, ...]) -> None:
    offenders = [
        rel(path)
        for path in modules("realtime")
        if uses(imports_of(path), library)
        and rel(path) not in COMPOSITION_ROOTS
        and not rel(path).startswith(allowed)
    ]
    assert offenders == [], f"{library} imported outside {allowed or 'nowhere'}: {offenders}"


def test_the_engine_never_reaches_up() -> None:
    core = [p for p in modules("realtime") if not rel(p).startswith("realtime/transport/")]
    for path in core:
        if rel(path) in COMPOSITION_ROOTS:
            continue
        names = imports_of(path)
        assert not uses(names, "realtime.server"), rel(path)
        assert not uses(names, "realtime.cli"), rel(path)


def test_the_package_is_importable_without_its_edges() -> None:
    import compat_sse
    import realtime

    assert realtime.__all__ and compat_sse.__doc__
