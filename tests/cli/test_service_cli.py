"""`mpr service` run in-process against the real stack, as a super app's operators type it."""

import asyncpg
import pytest

from tests.e2e.test_mini_service_end_to_end import new_super_app
from tests.mpr_runner import Mpr

REFUSED, NOT_FOUND, USAGE, FAILURE = 3, 4, 2, 1


async def test_a_mini_service_page_is_edited_tested_released_and_duplicated(
    mpr: Mpr, catalog_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = await new_super_app(catalog_db)
    created = await mpr("service", "create", "--app", app, "--actor", "olly")
    service = f"mini-service:{app}:1"
    assert (created.code, created.out) == (0, f"{service}  DRAFT\n"), created

    by_parts = ["--app", app, "--version", "1"]
    edits = [
        (["title", *by_parts, "--default", "en", "--text", "en=Services", "--text", "id=Layanan"],
         "edit_title"),
        (["add-section", service, "--title", "en=Food", "--title", "id=Makanan",
          "--program", "coffee-shop", "--program", "noodle-bar"], "add_section"),
        (["add-program", "section-1", "tea-house", service, "--position", "0"],
         "add_mini_program"),
        (["move-program", "section-1", "noodle-bar", "0", "--id", service], "move_mini_program"),
        (["remove-program", "section-1", "coffee-shop", service], "remove_mini_program"),
        (["edit-section", "carousel", *by_parts, "--image", "https://cdn.example.com/a.png"],
         "edit_section"),
        (["add-section", service, "--title", "en=Travel", "--position", "0"], "add_section"),
        (["move-section", "section-2", "5", service], "move_section"),
        (["delete-section", "section-2", service], "delete_section"),
    ]
    for args, command in edits:
        sent = await mpr("service", *args, "--actor", "olly")
        assert (sent.code, sent.out) == (0, f"{command} accepted: {service}  DRAFT\n"), sent

    page = (await mpr("service", "preview", service, "--language", "id", "--json")).json()
    assert page["title"] == "Layanan"
    assert [(s["section_id"], s["title"], s["mini_program_ids"]) for s in page["sections"]] == [
        ("carousel", None, []), ("banner", None, []), ("favorite", None, []),
        ("recently-used", None, []), ("section-1", "Makanan", ["noodle-bar", "tea-house"])]
    assert (await mpr("service", "preview", service)).out.startswith("Services  (en)\n")
    content = (await mpr("service", "content", service)).out
    assert content.startswith("title  en: Services, id: Layanan  (default en)\n")
    assert "https://cdn.example.com/a.png" in content

    tested = await mpr("service", "test", service, "--tester", "qa@example.com",
                       "--tester", "pm@example.com", "--actor", "olly")
    assert tested.out == f"test accepted: {service}  TESTING\n", tested
    tester = (await mpr("service", "resolve", "--app", app, "--user", "u-1",
                        "--email", "QA@example.com", "--json")).json()
    assert (tester["version_no"], tester["source"]) == (1, "tester")
    nobody = await mpr("service", "resolve", "--app", app, "--user", "u-1")
    assert nobody.out == f"none (no mini service of {app} is released)\n"
    late = await mpr("service", "add-section", service, "--title", "en=Late", "--actor", "olly")
    assert ("add_section is not allowed in status TESTING (allowed in: DRAFT); only a DRAFT "
            "can be edited: revert it to DRAFT to edit") in late.error(REFUSED)
    by_operator = await mpr("service", "release", "5", service, "--actor", "olly")
    assert "needs service_admin" in by_operator.error(REFUSED)

    monkeypatch.setenv("MPR_ACTOR", "ada")  # who is asking, when --actor is not given
    rolled_out = await mpr("service", "release", "5", service)
    assert rolled_out.out == f"release accepted: {service}  RELEASING 5%\n", rolled_out
    off_ladder = await mpr("service", "release", "7", service)
    assert "not on" in off_ladder.error(REFUSED)
    status = (await mpr("service", "status", service)).out
    assert "RELEASING 5%" in status and "ladder 1 2 [5] 10 20 50 100" in status
    assert "release by ada" in status, "the last refusal is shown"
    released = await mpr("service", "release", "100", "--app", app, "--version", "1")
    assert released.out == f"release accepted: {service}  RELEASED\n", released

    duplicated = await mpr("service", "duplicate", "--app", app, "--from", "1")
    second = f"mini-service:{app}:2"
    assert duplicated.out == f"{second}  DRAFT (duplicate of version 1)\n", duplicated
    again = await mpr("service", "duplicate", "--app", app, "--from", "2")
    assert "only a RELEASED or ARCHIVED version can be duplicated" in again.error(REFUSED)
    copied = (await mpr("service", "preview", second, "--json")).json()
    assert copied["sections"] == (await mpr("service", "preview", service, "--json")).json()[
        "sections"]

    history = (await mpr("service", "history", "--app", app, "--json")).json()
    assert [(v["version_no"], v["status"], v["duplicated_from"]) for v in history] == [
        (2, "DRAFT", 1), (1, "RELEASED", None)]
    assert "RELEASED" in (await mpr("service", "history", "--app", app)).out
    everyone = await mpr("service", "resolve", "--app", app, "--user", "u-1")
    assert everyone.out == "1 (released)\n"


async def test_mistakes_are_reported_with_their_exit_codes(
    mpr: Mpr, catalog_db: asyncpg.Pool,
) -> None:
    app = await new_super_app(catalog_db)
    missing = await mpr("service", "status", "--app", app, "--version", "99")
    assert f"no mini service version mini-service:{app}:99" in missing.error(NOT_FOUND)
    assert (await mpr("service", "revert", f"mini-service:{app}:99",
                      "--actor", "ada")).code == NOT_FOUND
    assert (await mpr("service", "duplicate", "--app", app, "--from", "99")).code == NOT_FOUND
    unknown = await mpr("service", "create", "--app", "no-such-app", "--actor", "olly")
    assert "unknown target app 'no-such-app'" in unknown.error(FAILURE)

    assert "not LANG=TEXT" in (await mpr("service", "title", "--app", app, "--version", "1",
                                         "--text", "Services")).err
    for args, message in [
        (["status"], "which version?"),
        (["status", "release:a:1.0.0:gopay:production"], "not a mini service id"),
        (["status", f"mini-service:{app}:1", "--app", app], "not both"),
        (["edit-section", "carousel", "--app", app, "--version", "1", "--actor", "olly"],
         "needs a title or images"),
        (["test", "--app", app, "--version", "1", "--tester", "nobody", "--actor", "olly"],
         "not an email address"),
    ]:
        assert message in (await mpr("service", *args)).error(USAGE), args

    await mpr("service", "create", "--app", app, "--actor", "olly")
    deleted = await mpr("service", "delete", "--app", app, "--version", "1", "--actor", "olly")
    assert deleted.out == f"delete accepted: mini-service:{app}:1  DELETED\n", deleted
    after = await mpr("service", "revert", "--app", app, "--version", "1", "--actor", "olly")
    assert "has finished (DELETED)" in after.error(REFUSED)


async def test_only_the_super_app_s_operators_create_and_duplicate_versions(
    mpr: Mpr, catalog_db: asyncpg.Pool,
) -> None:
    app = await new_super_app(catalog_db)
    refused = await mpr("service", "create", "--app", app, as_user="dev")
    assert "dev is not authorised to start a version of this mini service" in \
        refused.error(FAILURE)
    assert "needs service_admin or service_operator (has no role)" in refused.err

    created = await mpr("service", "create", "--app", app, as_user="olly")
    service = created.out.split()[0]
    assert created.code == 0 and service.startswith(f"mini-service:{app}:"), created
    assert (await mpr("service", "test", service, "--tester", "qa@example.com",
                      as_user="olly")).code == 0
    assert (await mpr("service", "release", "100", service, as_user="ada")).code == 0
    copy = await mpr("service", "duplicate", "--app", app, "--from", service.split(":")[-1],
                     as_user="dev")
    assert "dev is not authorised to start a version" in copy.error(FAILURE)
    by_operator = await mpr("service", "duplicate", "--app", app, "--from",
                            service.split(":")[-1], as_user="olly")
    assert by_operator.code == 0, by_operator
    status = (await mpr("service", "status", by_operator.out.split()[0], "--json")).json()
    assert status["created_by"] == "olly"
