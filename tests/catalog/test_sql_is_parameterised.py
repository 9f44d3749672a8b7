"""Every query the project sends to PostgreSQL carries its values as parameters ($1, $2...).

The rule is checked on the source, for every asyncpg call anywhere in the project: the query
text must be a literal, or an f-string whose only substitutions are module-level constants
(column lists, key clauses) that are themselves literals. A value spliced into SQL would fail
this test before it could reach a database.
"""

import ast
from collections.abc import Set
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mpr", "activities", "starters", "workers", "workflows")
# Names whose text may stand in a query: whole SQL files run as they are (the migrations,
# catalog/migrations/*.sql, are the schema), and a database name checked against
# catalog.admin.DATABASE_NAME before CREATE DATABASE (which takes no parameters).
SQL_FROM_FILES = {"mpr/catalog/db.py": {"sql"}, "mpr/catalog/admin.py": {"name"}}
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor"}


def sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def literal_constants(tree: ast.Module) -> set[str]:
    """Module-level NAMES bound to a string literal (or a concatenation of literals)."""
    constants = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            if is_literal(node.value, set()):
                constants |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return constants


def is_literal(node: ast.expr, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return is_literal(node.left, constants) and is_literal(node.right, constants)
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(part, ast.Constant)
            or (isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
                and part.value.id in constants)
            for part in node.values
        )
    return isinstance(node, ast.Name) and node.id in constants


def unsafe_queries(source: str, sql_from_files: Set[str] = frozenset()) -> list[int]:
    """Line numbers of the queries whose text is built from something other than literals."""
    tree = ast.parse(source)
    constants = literal_constants(tree) | sql_from_files
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in QUERY_METHODS and node.args
                and isinstance(node.args[0], ast.JoinedStr | ast.BinOp | ast.Call | ast.Name)
                and not is_literal(node.args[0], constants)):
            found.append(node.lineno)
    return found


def test_every_query_keeps_values_out_of_the_sql_text() -> None:
    unsafe = {
        str(path.relative_to(ROOT)): lines for path in sources()
        if (lines := unsafe_queries(
            path.read_text(), SQL_FROM_FILES.get(str(path.relative_to(ROOT)), set())
        ))
    }
    assert unsafe == {}


def test_the_check_catches_a_spliced_value() -> None:
    assert unsafe_queries(
        'KEY = "a = $1"\n'
        "async def f(db, name):\n"
        '    await db.fetch(f"SELECT * FROM t WHERE {KEY}", 1)\n'
        '    await db.fetch(f"SELECT * FROM t WHERE name = \'{name}\'")\n'
        '    await db.execute("DELETE FROM t WHERE name = " + name)\n'
        '    await db.fetchrow("SELECT * FROM t WHERE name = {}".format(name))\n'
        '    query = "SELECT * FROM t WHERE name = " + name\n'
        "    await db.fetch(query)\n"
    ) == [4, 5, 6, 8]
