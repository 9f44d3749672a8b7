"""The package manifest (app.json): decode it, check it against the package, extract its facts.

Pure functions only: the caller reads the package and hands over the manifest bytes and the
list of file paths (POSIX, relative to the package root). Every problem is collected, so a
developer fixes a broken package in one round instead of one error per build.

The contract, as checked here:

- `app.json` sits at the package root and is a UTF-8 JSON object;
- `name`: a non-empty string;
- `version`: a string equal to the version being released;
- `pages`: a non-empty list of unique page paths; each page is satisfied by at least one file
  whose path without its extension equals the page ("pages/index/index" by
  "pages/index/index.axml", ".js", ...);
- `minBaseVersion` (optional): a dotted numeric version such as "2.7.0";
- `jsapis` (optional): a list of unique, non-empty API names such as "my.tradePay".

`null` counts as absent for the optional fields. `description` (optional) is read but never
refused: a non-blank string of at most 1000 characters (basic_info's limit) is kept in the
manifest, where a release without basic_info takes it with the name (seed 000, "Check the basic
information"); anything else is left out, as a description the runtime ignores must not fail a
build. Other fields (window, tabBar, ...) belong to the mini program runtime and are not
checked here.
"""

import json
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from mpr.domain.release.models import MAX_DESCRIPTION_LENGTH, AppManifest

MANIFEST_PATH = "app.json"

BASE_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


class ManifestError(ValueError):
    """The package's manifest is unusable; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def manifest_from_files(files: Mapping[str, bytes], release_version: str) -> AppManifest:
    """Find, decode and validate app.json among the package's files (path -> content)."""
    raw = files.get(MANIFEST_PATH)
    if raw is None:
        raise ManifestError([missing_manifest_problem(files)])
    return validate_manifest(decode_manifest(raw), files, release_version)


def missing_manifest_problem(files: Iterable[str]) -> str:
    nested = sorted(path for path in files if posixpath.basename(path) == MANIFEST_PATH)
    if nested:
        return (
            f"app.json not found at the package root (found {nested[0]!r}: package the "
            "folder's contents, not the folder itself)"
        )
    return "app.json not found at the package root"


def decode_manifest(raw: bytes) -> object:
    try:
        document: object = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(["app.json is not UTF-8 text"]) from None
    except json.JSONDecodeError as error:
        raise ManifestError(
            [f"app.json is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"]
        ) from None
    return document


def validate_manifest(document: object, files: Iterable[str], release_version: str) -> AppManifest:
    """The manifest's facts, or ManifestError listing every problem found."""
    if not isinstance(document, dict):
        raise ManifestError([f"app.json must be a JSON object, not {_json_type(document)}"])
    problems = [
        *_name_problems(document.get("name")),
        *_version_problems(document.get("version"), release_version),
        *_pages_problems(document.get("pages"), files),
        *_base_version_problems(document.get("minBaseVersion")),
        *_jsapis_problems(document.get("jsapis")),
    ]
    if problems:
        raise ManifestError(problems)
    return AppManifest(
        name=document["name"],
        version=document["version"],
        pages=document["pages"],
        min_base_version=document.get("minBaseVersion"),
        jsapis=document.get("jsapis") or [],
        description=manifest_description(document.get("description")),
    )


def base_version_key(version: str) -> tuple[int, ...]:
    """A comparable key for a dotted numeric version; "2.7" and "2.7.0" compare equal."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def manifest_description(description: object) -> str | None:
    """app.json's description if basic_info could take it; None (not a problem) otherwise."""
    if (isinstance(description, str) and description.strip()
            and len(description) <= MAX_DESCRIPTION_LENGTH):
        return description
    return None


def _name_problems(name: object) -> list[str]:
    if not isinstance(name, str) or not name.strip():
        return ["app.json field 'name' must be a non-empty string"]
    return []


def _version_problems(version: object, release_version: str) -> list[str]:
    if version is None:
        return [f"app.json field 'version' is missing (expected {release_version!r})"]
    if not isinstance(version, str):
        return [f"app.json field 'version' must be a string such as {release_version!r}"]
    if version != release_version:
        return [
            f"app.json version {version!r} does not match the release version {release_version!r}"
        ]
    return []


def _pages_problems(pages: object, files: Iterable[str]) -> list[str]:
    if not isinstance(pages, list) or not pages:
        return ["app.json field 'pages' must be a non-empty list of page paths"]
    problems = _string_list_problems("pages", pages)
    stems = {posixpath.splitext(path)[0] for path in files}
    problems += [
        f"page {page!r} has no file (looked for {page}.*)"
        for page in pages
        if isinstance(page, str) and page and page not in stems
    ]
    return problems


def _base_version_problems(version: object) -> list[str]:
    if version is None or (isinstance(version, str) and BASE_VERSION.match(version)):
        return []
    return [
        f"app.json field 'minBaseVersion' must be a dotted numeric version such as '2.7.0', "
        f"not {json.dumps(version)}"
    ]


def _jsapis_problems(jsapis: object) -> list[str]:
    if jsapis is None:
        return []
    if not isinstance(jsapis, list):
        return ["app.json field 'jsapis' must be a list of API names such as 'my.request'"]
    return _string_list_problems("jsapis", jsapis)


def _string_list_problems(field: str, items: list[object]) -> list[str]:
    problems = [
        f"app.json field '{field}' item {index} must be a non-empty string, not {json.dumps(item)}"
        for index, item in enumerate(items)
        if not isinstance(item, str) or not item.strip()
    ]
    counts = Counter(item for item in items if isinstance(item, str) and item.strip())
    duplicates = sorted(item for item, count in counts.items() if count > 1)
    problems += [f"app.json field '{field}' lists {item!r} more than once" for item in duplicates]
    return problems


def _json_type(value: object) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
        case _:
            return type(value).__name__
