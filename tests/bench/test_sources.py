"""The benchmark's generated source tree: the same bytes every time, the size asked for, and a
package the build accepts (a small one: the real one is 50 MiB)."""

import hashlib
from pathlib import Path

from bench.build import build_once
from bench.sources import big_tree, tiny_package


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_tree_is_the_same_for_the_same_seed_and_holds_what_was_asked(
    tmp_path: Path,
) -> None:
    one = big_tree(tmp_path / "one", files=300, total_bytes=400_000)
    two = big_tree(tmp_path / "two", files=300, total_bytes=400_000)
    other = big_tree(tmp_path / "other", files=300, total_bytes=400_000, seed=1)

    assert _digest(one.root) == _digest(two.root) != _digest(other.root)
    files = [path for path in one.root.rglob("*") if path.is_file()]
    assert len(files) == one.files == 300
    assert sum(path.stat().st_size for path in files) == 400_000


def test_the_build_accepts_the_tree_and_bundles_it_identically_twice(tmp_path: Path) -> None:
    tree = big_tree(tmp_path / "tree", files=200, total_bytes=300_000)

    first, second = build_once(tree.root), build_once(tree.root)

    assert first.sha256 == second.sha256
    assert 0 < first.size_bytes < 300_000, "the text compresses"


def test_the_tiny_package_builds(tmp_path: Path) -> None:
    assert build_once(tiny_package(tmp_path / "tiny", "1.1.0"), "1.1.0").size_bytes > 0
