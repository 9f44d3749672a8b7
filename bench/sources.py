"""Package sources for the benchmarks, made at run time and always the same bytes.

`tiny_package`: one page, a few bytes (the lifecycle and parked benchmarks: what they measure is
the release's path, not its build). `big_tree`: 5,000 files and 50 MiB, seeded, mixing text that
compresses (scripts, templates, styles, JSON) with bytes that do not (images, fonts).
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
BIG_TREE_FILES = 5_000
BIG_TREE_BYTES = 50 * MiB
BIG_TREE_SEED = 20261121
INCOMPRESSIBLE_SHARE = 0.4
"""Of the bytes: images and fonts (random bytes); the rest is text."""
PAGES = 50
WORDS = (
    "const let var function return if else for while switch case break continue new this "
    "Page Component data setData onLoad onShow onReady onHide props methods my.request "
    "my.navigateTo view text image button scroll-view swiper input form picker order coffee "
    "cart price total user token session payment wallet voucher merchant store latte mocha "
    "espresso americano size small medium large ice hot sugar milk quantity 0 1 2 10 100 "
    "true false null undefined => { } ( ) ; , . = === !== + - * / && || ? : [ ]"
).split()


def tiny_package(root: Path, version: str) -> Path:
    """A valid package of one page."""
    if root.exists():
        return root
    page = root / "pages" / "index"
    page.mkdir(parents=True)
    manifest = {"name": "Bench Shop", "version": version, "pages": ["pages/index/index"]}
    (root / "app.json").write_text(json.dumps(manifest))
    (page / "index.axml").write_text("<view>bench shop</view>")
    (page / "index.js").write_text("Page({});")
    return root


@dataclass(frozen=True)
class TreeFacts:
    root: Path
    files: int
    total_bytes: int
    incompressible_bytes: int


def big_tree(root: Path, version: str = "1.0.0", *, files: int = BIG_TREE_FILES,
             total_bytes: int = BIG_TREE_BYTES, seed: int = BIG_TREE_SEED) -> TreeFacts:
    """A valid package of `files` files holding `total_bytes` in all, the same for the same
    arguments."""
    rng = random.Random(seed)
    pages = [f"pages/p{n:02d}/index" for n in range(PAGES)]
    manifest = json.dumps({"name": "Bench Big", "version": version, "pages": pages}).encode()
    plan: list[tuple[str, bool]] = [("app.json", False)]
    for page in pages:
        plan += [(f"{page}.axml", False), (f"{page}.js", False), (f"{page}.acss", False)]
    while len(plan) < files:
        n = len(plan)
        if rng.random() < 0.3:
            folder = f"assets/img/{n % 40:02d}"
            plan.append((f"{folder}/i{n:05d}.{rng.choice(['png', 'jpg', 'webp'])}", True))
        else:
            folder = f"components/c{n % 120:03d}"
            plan.append((f"{folder}/f{n:05d}.{rng.choice(['js', 'axml', 'acss', 'json'])}",
                         False))
    # Sizes: heavy-tailed, scaled so that the whole tree holds exactly total_bytes, with the
    # incompressible files holding their share of it.
    weights = [rng.paretovariate(1.6) for _ in plan]
    incompressible = [i for i, (_, binary) in enumerate(plan) if binary]
    text = [i for i, (_, binary) in enumerate(plan) if not binary and i != 0]
    sizes = [0] * len(plan)
    binary_budget = int(total_bytes * INCOMPRESSIBLE_SHARE)
    text_budget = total_bytes - binary_budget - len(manifest)
    for group, budget in ((incompressible, binary_budget), (text, text_budget)):
        weight = sum(weights[i] for i in group)
        for i in group:
            sizes[i] = max(1, int(budget * weights[i] / weight))
        sizes[group[-1]] += budget - sum(sizes[i] for i in group)
    if root.exists():
        return TreeFacts(root, len(plan), total_bytes, binary_budget)
    for i, (path, binary) in enumerate(plan):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if i == 0:
            target.write_bytes(manifest)
        elif binary:
            target.write_bytes(rng.randbytes(sizes[i]))
        else:
            target.write_bytes(_text(rng, sizes[i]))
    return TreeFacts(root, len(plan), total_bytes, binary_budget)


def _text(rng: random.Random, size: int) -> bytes:
    words: list[str] = []
    length = 0
    while length <= size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words).encode()[:size]
