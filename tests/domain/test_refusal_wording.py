"""Refusals are written for operators: they never cite the product documents ("seed 004")
that the code's comments cite, whichever layer words them."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORDING = ("mpr/domain", "mpr/catalog", "workflows", "activities", "starters", "mpr/cli")


def messages(path: Path) -> list[str]:
    """The string literals of a module that are not docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


@pytest.mark.parametrize("folder", WORDING)
def test_no_message_cites_a_seed_document(folder: str) -> None:
    cited = [(str(path.relative_to(ROOT)), text) for path in sorted((ROOT / folder).rglob("*.py"))
             for text in messages(path) if "seed 0" in text]
    assert cited == []


def test_a_cited_seed_is_found(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""Rules of seed 004."""\n'
                     'def f():\n'
                     '    """seed 004"""\n'
                     '    return f"{1} cannot come back (seed 004)"\n')
    assert messages(probe) == [" cannot come back (seed 004)"]
