"""The command tables operators read (docs/releases.md, docs/mini-services.md,
docs/channels.md) say exactly what the rule tables in code say: the same commands, payload
fields, stages and roles."""

import re
from pathlib import Path
from typing import Any

import pytest

from mpr.domain.channel.rules import CHANNEL
from mpr.domain.core.models import Role
from mpr.domain.core.rules import Lifecycle
from mpr.domain.mini_service.rules import MINI_SERVICE
from mpr.domain.release.models import Reviewer
from mpr.domain.release.rules import RELEASE, REVIEWER_ROLE

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADER = "| command | payload | allowed in | leads to | who |"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<payload>.*?) \| (?P<allowed>[A-Z_, ]+) \| "
                 r"(?P<leads_to>.*?) \| (?P<who>[a-z_, ]+) \|$")


def documented(doc: str) -> dict[str, dict[str, Any]]:
    lines = (DOCS / doc).read_text().splitlines()
    assert lines.count(HEADER) == 1, f"{doc} has one command table headed {HEADER!r}"
    rows: dict[str, dict[str, Any]] = {}
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"{doc}: a row the test cannot read: {line}"
        assert match["name"] not in rows, f"{doc} lists {match['name']} twice"
        rows[match["name"]] = {
            "payload": top_level_fields(match["payload"]),
            "allowed": {stage.strip() for stage in match["allowed"].split(",")},
            "who": {role.strip() for role in match["who"].split(",")},
        }
    return rows


def top_level_fields(cell: str) -> set[str]:
    """`{actor, title: {a, b}, position?}` (maybe followed by a remark) -> {actor, title,
    position}."""
    shown = cell[cell.index("`{") + 2: cell.index("}`")]
    fields, depth, current = [], 0, ""
    for char in shown:
        depth += char in "{["
        depth -= char in "}]"
        if char == "," and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return {re.split(r"[?:]", field.strip())[0] for field in fields if field.strip()}


def coded(lifecycle: Lifecycle[Any, Any, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for name, rule in lifecycle.rules.items():
        if isinstance(rule.roles, frozenset):
            who = rule.roles
        else:  # a review is sent for one organisation, by its reviewers
            who = frozenset(REVIEWER_ROLE[reviewer] for reviewer in Reviewer)
        rows[name] = {
            "payload": set(rule.payload.model_fields),
            "allowed": {str(stage) for stage in rule.allowed_in},
            "who": {Role(role).value for role in who},
        }
    return rows


@pytest.mark.parametrize(("doc", "lifecycle"), [("releases.md", RELEASE),
                                                ("mini-services.md", MINI_SERVICE),
                                                ("channels.md", CHANNEL)])
def test_the_documented_table_is_the_rule_table(
    doc: str, lifecycle: Lifecycle[Any, Any, Any]
) -> None:
    assert documented(doc) == coded(lifecycle)


def test_a_difference_is_noticed() -> None:
    table = coded(RELEASE)
    table["full_release"]["who"] = table["full_release"]["who"] | {"developer"}
    assert documented("releases.md") != table
