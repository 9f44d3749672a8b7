"""The import rules of docs/architecture.md, checked on the source."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("mpr", "workflows", "activities", "starters", "workers")
LIFECYCLES = ("release", "mini_service", "channel")


def modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of every import in the file, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def top(module: str) -> str:
    return module.split(".")[0]


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def impure(path: Path) -> list[str]:
    """What the file imports beyond the standard library, pydantic and the domain itself."""
    return [module for module, _ in imports(path)
            if top(module) not in sys.stdlib_module_names and top(module) != "pydantic"
            and not under(module, "mpr.domain")]


def private(path: Path) -> list[str]:
    """Underscored names the file takes from another module of the product."""
    return [f"{module}.{name}" for module, names in imports(path) if top(module) in PRODUCT
            for name in names if name.startswith("_")]


@pytest.mark.parametrize("path", modules("mpr/domain"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_domain_is_pure(path: Path) -> None:
    assert impure(path) == []


@pytest.mark.parametrize("lifecycle", LIFECYCLES)
def test_a_lifecycle_never_imports_a_sibling(lifecycle: str) -> None:
    siblings = [f"mpr.domain.{other}" for other in LIFECYCLES if other != lifecycle]
    siblings += [f"activities.{other}" for other in LIFECYCLES if other != lifecycle]
    for path in modules(f"mpr/domain/{lifecycle}", f"activities/{lifecycle}"):
        for module, _ in imports(path):
            assert not any(under(module, s) for s in siblings), f"{path} imports {module}"


@pytest.mark.parametrize("path", modules("workflows"), ids=lambda p: str(p.relative_to(ROOT)))
def test_workflows_do_no_io_of_their_own(path: Path) -> None:
    for module, _ in imports(path):
        assert not any(under(module, banned) for banned in (
            "mpr.catalog", "mpr.infra", "mpr.cli", "starters", "workers", "asyncpg",
        )), f"{path.name} imports {module}"


def test_nothing_imports_the_entry_points() -> None:
    for path in modules(*PRODUCT):
        inside = path.relative_to(ROOT).parts
        for module, _ in imports(path):
            if under(module, "mpr.cli"):
                assert inside[:2] == ("mpr", "cli"), f"{path} imports {module}"
            if under(module, "workers"):
                assert inside[0] == "workers", f"{path} imports {module}"


def test_no_module_takes_another_modules_private_names() -> None:
    assert [(str(path), private(path)) for path in modules(*PRODUCT) if private(path)] == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import json\nfrom mpr.cli.releases import _actor, register\n"
                     "def f():\n    import asyncpg\n")
    assert private(probe) == ["mpr.cli.releases._actor"]
    assert impure(probe) == ["mpr.cli.releases", "asyncpg"]
