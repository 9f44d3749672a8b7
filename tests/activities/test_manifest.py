"""The release manifest: every rule of the app.json contract, and that problems are collected."""

import json
from typing import Any

import pytest

from mpr.domain.release.manifest import (
    ManifestError,
    base_version_key,
    manifest_from_files,
    validate_manifest,
)
from mpr.domain.release.models import AppManifest

FILES = [
    "app.json",
    "pages/index/index.axml",
    "pages/index/index.js",
    "pages/cart/cart.js",
]


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Coffee Shop",
        "version": "1.0.0",
        "pages": ["pages/index/index", "pages/cart/cart"],
        "minBaseVersion": "2.7.0",
        "jsapis": ["my.request", "my.tradePay"],
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def problems(doc: object, files: list[str] = FILES, version: str = "1.0.0") -> list[str]:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc, files, version)
    return caught.value.problems


def test_a_valid_manifest_gives_its_facts() -> None:
    assert validate_manifest(document(window={"defaultTitle": "x"}), FILES, "1.0.0") == (
        AppManifest(
            name="Coffee Shop",
            version="1.0.0",
            pages=["pages/index/index", "pages/cart/cart"],
            min_base_version="2.7.0",
            jsapis=["my.request", "my.tradePay"],
        )
    )


@pytest.mark.parametrize("absent", [..., None])
def test_optional_fields_may_be_absent_or_null(absent: object) -> None:
    manifest = validate_manifest(document(minBaseVersion=absent, jsapis=absent), FILES, "1.0.0")
    assert manifest.min_base_version is None
    assert manifest.jsapis == []


def test_a_page_is_satisfied_by_any_extension() -> None:
    manifest = validate_manifest(
        document(pages=["pages/cart/cart"]), ["pages/cart/cart.js"], "1.0.0"
    )
    assert manifest.pages == ["pages/cart/cart"]


@pytest.mark.parametrize(
    "files",
    [
        ["pages/cart/cart2.js"],
        ["pages/cart/cart/cart.js"],
        ["pages/cart.js"],
        ["other/pages/cart/cart.js"],
    ],
)
def test_a_page_needs_a_file_with_exactly_its_path(files: list[str]) -> None:
    assert problems(document(pages=["pages/cart/cart"]), files) == [
        "page 'pages/cart/cart' has no file (looked for pages/cart/cart.*)"
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "app.json must be a JSON object, not an array"),
        ("app", "app.json must be a JSON object, not a string"),
        (None, "app.json must be a JSON object, not null"),
        (3, "app.json must be a JSON object, not a number"),
        (document(name=...), "app.json field 'name' must be a non-empty string"),
        (document(name="  "), "app.json field 'name' must be a non-empty string"),
        (document(name=7), "app.json field 'name' must be a non-empty string"),
        (document(version=...), "app.json field 'version' is missing (expected '1.0.0')"),
        (document(version=1), "app.json field 'version' must be a string such as '1.0.0'"),
        (
            document(version="1.0.1"),
            "app.json version '1.0.1' does not match the release version '1.0.0'",
        ),
        (document(pages=...), "app.json field 'pages' must be a non-empty list of page paths"),
        (document(pages=[]), "app.json field 'pages' must be a non-empty list of page paths"),
        (
            document(pages="pages/index/index"),
            "app.json field 'pages' must be a non-empty list of page paths",
        ),
        (
            document(pages=["pages/index/index", 3]),
            "app.json field 'pages' item 1 must be a non-empty string, not 3",
        ),
        (
            document(pages=["pages/index/index", ""]),
            "app.json field 'pages' item 1 must be a non-empty string, not \"\"",
        ),
        (
            document(pages=["pages/index/index", "pages/index/index"]),
            "app.json field 'pages' lists 'pages/index/index' more than once",
        ),
        (
            document(pages=["pages/index/index", "pages/menu/menu"]),
            "page 'pages/menu/menu' has no file (looked for pages/menu/menu.*)",
        ),
        (
            document(minBaseVersion="2.x"),
            "app.json field 'minBaseVersion' must be a dotted numeric version such as '2.7.0', "
            'not "2.x"',
        ),
        (
            document(minBaseVersion=2.7),
            "app.json field 'minBaseVersion' must be a dotted numeric version such as '2.7.0', "
            "not 2.7",
        ),
        (
            document(jsapis="my.request"),
            "app.json field 'jsapis' must be a list of API names such as 'my.request'",
        ),
        (
            document(jsapis=["my.request", None]),
            "app.json field 'jsapis' item 1 must be a non-empty string, not null",
        ),
        (
            document(jsapis=["my.scan", "my.request", "my.scan"]),
            "app.json field 'jsapis' lists 'my.scan' more than once",
        ),
    ],
)
def test_each_rule_has_a_specific_message(doc: object, expected: str) -> None:
    assert problems(doc) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    doc = document(name="", version="1.0.1", pages=["pages/index/index", "pages/orders/orders"])
    doc.update(minBaseVersion="latest", jsapis=["my.scan", "my.scan"])
    error_problems = problems(doc)
    assert error_problems == [
        "app.json field 'name' must be a non-empty string",
        "app.json version '1.0.1' does not match the release version '1.0.0'",
        "page 'pages/orders/orders' has no file (looked for pages/orders/orders.*)",
        "app.json field 'minBaseVersion' must be a dotted numeric version such as '2.7.0', "
        'not "latest"',
        "app.json field 'jsapis' lists 'my.scan' more than once",
    ]
    with pytest.raises(ManifestError, match="; ".join(error_problems[:2])):
        validate_manifest(doc, FILES, "1.0.0")


def files_with(manifest: bytes | None, *paths: str) -> dict[str, bytes]:
    files = {path: b"" for path in paths}
    if manifest is not None:
        files["app.json"] = manifest
    return files


def test_manifest_from_files_reads_app_json_at_the_root() -> None:
    raw = json.dumps(document(pages=["pages/index/index"])).encode()
    manifest = manifest_from_files(files_with(raw, "pages/index/index.axml"), "1.0.0")
    assert manifest.pages == ["pages/index/index"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (files_with(None, "pages/index/index.axml"), "app.json not found at the package root"),
        (
            files_with(None, "coffee-shop/app.json", "coffee-shop/pages/index/index.axml"),
            "app.json not found at the package root (found 'coffee-shop/app.json': package "
            "the folder's contents, not the folder itself)",
        ),
        (
            files_with(b'{"name": "x",}'),
            "app.json is not valid JSON: Expecting property name "
            "enclosed in double quotes at line 1 column 14",
        ),
        (files_with(b"\xff\xfe{}"), "app.json is not UTF-8 text"),
    ],
)
def test_an_unreadable_manifest_is_one_clear_problem(
    files: dict[str, bytes], expected: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        manifest_from_files(files, "1.0.0")
    assert caught.value.problems == [expected]


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [("2.7", "2.7.1"), ("2.9.9", "2.10.0"), ("1.99", "2"), ("2.6.5", "2.7")],
)
def test_base_versions_compare_numerically(smaller: str, larger: str) -> None:
    assert base_version_key(smaller) < base_version_key(larger)


def test_trailing_zeros_do_not_change_a_base_version() -> None:
    assert base_version_key("2.7") == base_version_key("2.7.0") == base_version_key("2.7.0.0")
