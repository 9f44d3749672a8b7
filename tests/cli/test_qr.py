"""`mpr qr` run in-process against the test catalog, its files read by a real decoder."""

from pathlib import Path

import asyncpg
import pytest

from mpr.domain.qr import ImageFormat, trial_marker
from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, to_released
from tests.catalog.test_qr_codes import PAGES, decoded, ready
from tests.mpr_runner import Mpr, catalog_mpr  # noqa: F401 (the module's `mpr`)

OFFICIAL = "alipays://platformapi/startapp?appId=prog&page=pages%2Findex&query="
TRIAL_ID = "release:prog:1.1.0:alipaycn:production"


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Files `mpr qr` writes without a path land in the test's own directory."""
    monkeypatch.chdir(tmp_path)


async def test_an_official_code_is_written_and_its_link_printed(
    mpr: Mpr, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))

    run = await mpr("qr", "official", "--program", "prog", "--app", "alipaycn")

    path = "prog-alipaycn-production-official.png"
    assert (run.code, run.out.splitlines()) == (0, [path, OFFICIAL])
    assert decoded((tmp_path / path).read_bytes(), ImageFormat.PNG) == [OFFICIAL]


async def test_a_trial_code_as_svg_by_its_extension(
    mpr: Mpr, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ready(db_pool, Release("1.1.0", app="alipaycn"))

    run = await mpr("qr", "trial", TRIAL_ID, "--page", "pages/menu/menu", "--query", "t=1",
                    "--output", "trial.svg", "--scale", "4")

    assert run.code == 0, run.err
    path, link = run.out.splitlines()
    assert path == "trial.svg"
    assert trial_marker(link) == TRIAL_ID and "page=pages%2Fmenu%2Fmenu&query=t%3D1" in link
    assert decoded((tmp_path / "trial.svg").read_bytes(), ImageFormat.SVG) == [link]


async def test_a_trial_code_named_by_its_parts_answers_in_json(
    mpr: Mpr, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ready(db_pool, Release("1.1.0", app="alipaycn"))

    run = await mpr("qr", "trial", "--program", "prog", "--version", "1.1.0", "--app",
                    "alipaycn", "--format", "svg", "--json")

    answer = run.json()
    assert answer == {
        "path": "prog-alipaycn-production-1.1.0-trial.svg",
        "format": "svg",
        "pixels": answer["pixels"],
        "kind": "trial",
        "link": answer["link"],
        "page": PAGES[0],
        "version": "1.1.0",
        "release_id": TRIAL_ID,
        "notice": None,
    }
    assert decoded((tmp_path / answer["path"]).read_bytes(), ImageFormat.SVG) == [
        answer["link"]]


async def test_an_offline_channel_gets_its_code_and_a_note(
    mpr: Mpr, db_pool: asyncpg.Pool
) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))
    await db_pool.execute(
        "UPDATE channels SET offline_kind = 'admin', offline_reason = 'fraud report', "
        "offline_by = 'adam', offline_at = now()")

    run = await mpr("qr", "official", "--program", "prog", "--app", "alipaycn")

    assert run.out.splitlines()[2] == (
        "note: prog/alipaycn/production is offline (fraud report): the code opens nothing "
        "until it is back online")


async def test_refusals_are_one_line_with_the_repos_exit_codes(
    mpr: Mpr, db_pool: asyncpg.Pool
) -> None:
    official = ["qr", "official", "--program", "prog", "--app"]
    assert (await mpr(*official, "gopay")).error(3) == (
        "mpr: gopay has no official link template: set one with "
        "`mpr admin target-app set --app gopay --official-link-template TEMPLATE`\n")
    assert "nothing is released on prog/alipaycn/production" in (
        await mpr(*official, "alipaycn")).error(3)
    assert (await mpr("qr", "trial", TRIAL_ID)).error(4) == f"mpr: no release {TRIAL_ID}\n"

    candidate = Release("1.1.0", app="alipaycn")
    await ready(db_pool, candidate)
    assert "'pages/nope' is not a page of version 1.1.0; its pages: " + ", ".join(PAGES) in (
        await mpr("qr", "trial", TRIAL_ID, "--page", "pages/nope")).error(2)
    await candidate.move(db_pool, Stage.CANCELED)
    assert f"{TRIAL_ID} is CANCELED: a trial code is made for a release in READY_TO_APPLY" in (
        await mpr("qr", "trial", TRIAL_ID)).error(3)
    assert "unknown target app 'wechat'" in (await mpr(*official, "wechat")).error(1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query", "q" * 257], "invalid input: query: String should have at most 256"),
        (["--scale", "0"], "invalid input: scale"),
        (["--scale", "41"], "invalid input: scale"),
        (["--format", "png", "--output", "x.svg"],
         "--format png does not match the file's extension .svg"),
        (["--output", "x.jpg"], "cannot write a QR code as .jpg: name the file .png or .svg"),
    ],
)
async def test_bad_options_are_usage_errors(mpr: Mpr, args: list[str], message: str) -> None:
    run = await mpr("qr", "official", "--program", "prog", "--app", "alipaycn", *args)

    assert message in run.error(2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([TRIAL_ID, "--program", "prog"], "by its id or by --program/--version/--app, not both"),
        (["--program", "prog", "--app", "alipaycn"], "missing --version to name the release"),
        ([], "which release? give RELEASE_ID, or --program, --version and --app"),
        (["release:prog"], "not a release id"),
    ],
)
async def test_a_trial_code_names_its_release_once(
    mpr: Mpr, args: list[str], message: str
) -> None:
    assert message in (await mpr("qr", "trial", *args)).error(2)


async def test_a_file_that_cannot_be_written_is_a_failure(
    mpr: Mpr, db_pool: asyncpg.Pool
) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))

    run = await mpr("qr", "official", "--program", "prog", "--app", "alipaycn",
                    "--output", "missing/code.png")

    assert run.error(1) == (
        "mpr: cannot write missing/code.png: No such file or directory\n")
