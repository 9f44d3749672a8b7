"""`mpr` run in-process against the test database, as an operator would type it."""


import asyncpg
import pytest

from mpr.domain.release.stages import Stage
from tests.catalog.factories import Release, package, to_released
from tests.mpr_runner import Mpr, catalog_mpr  # noqa: F401 (the module's `mpr`)

# --- members ---------------------------------------------------------------------------------


async def test_members_are_granted_listed_and_revoked(mpr: Mpr) -> None:
    add = await mpr(
        "admin", "member", "add", "--workspace", "ws", "--user", "alice", "--role", "developer"
    )
    assert (add.code, add.out) == (0, "granted developer for alice in ws\n")
    pa = await mpr(
        "admin",
        "member",
        "add",
        "--workspace",
        "ws",
        "--user",
        "bob",
        "--role",
        "program_admin",
        "--mini-program",
        "prog",
        "--json",
    )
    assert pa.json() == {
        "changed": True,
        "member": {
            "workspace_id": "ws",
            "user_id": "bob",
            "role": "program_admin",
            "mini_program_id": "prog",
            "target_app": "",
        },
    }
    again = await mpr(
        "admin", "member", "add", "--workspace", "ws", "--user", "alice", "--role", "developer"
    )
    assert (again.code, again.out) == (0, "already granted: developer for alice in ws\n")

    listing = await mpr("admin", "member", "list", "--workspace", "ws")
    assert listing.out.splitlines() == [
        "WORKSPACE  USER   ROLE           MINI PROGRAM  TARGET APP",
        "ws         alice  developer      -             -",
        "ws         bob    program_admin  prog          -",
    ]
    by_user = await mpr("admin", "member", "list", "--user", "bob", "--json")
    assert [m["user_id"] for m in by_user.json()] == ["bob"]

    removed = await mpr(
        "admin", "member", "remove", "--workspace", "ws", "--user", "alice", "--role", "developer"
    )
    assert (removed.code, removed.out) == (0, "revoked developer for alice in ws\n")
    absent = await mpr(
        "admin", "member", "remove", "--workspace", "ws", "--user", "alice", "--role", "developer"
    )
    assert "no such membership" in absent.error(1)


async def test_an_empty_listing_says_so(mpr: Mpr) -> None:
    assert (await mpr("admin", "member", "list")).out == "(none)\n"
    assert (await mpr("admin", "member", "list", "--json")).json() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "program_admin"], "role program_admin needs --mini-program"),
        (["--role", "partner_reviewer"], "role partner_reviewer needs --target-app"),
        (["--role", "owner", "--target-app", "gopay"], "--target-app applies only to role"),
        (["--role", "owner", "--workspace", "two words"], "invalid input: workspace_id"),
    ],
)
async def test_membership_mistakes_are_usage_errors(
    mpr: Mpr, args: list[str], message: str
) -> None:
    run = await mpr("admin", "member", "add", "--workspace", "ws", "--user", "u", *args)

    assert message in run.error(2)


async def test_an_invalid_role_is_a_usage_error(mpr: Mpr) -> None:
    run = await mpr("admin", "member", "add", "--workspace", "ws", "--user", "u", "--role", "root")

    assert run.code == 2
    assert "invalid choice: 'root'" in run.err


async def test_a_partner_reviewer_of_an_unknown_app_is_refused(
    mpr: Mpr,
) -> None:
    run = await mpr(
        "admin",
        "member",
        "add",
        "--workspace",
        "wechat-org",
        "--user",
        "u",
        "--role",
        "partner_reviewer",
        "--target-app",
        "wechat",
    )

    assert run.error(1) == (
        "mpr: unknown target app 'wechat'; known target apps: alipaycn, dana, gcash, gopay\n"
    )


# --- target apps -----------------------------------------------------------------------------


async def test_target_apps_are_created_changed_and_listed(mpr: Mpr) -> None:
    created = await mpr(
        "admin",
        "target-app",
        "set",
        "--app",
        "truemoney",
        "--name",
        "TrueMoney",
        "--reviewers",
        "platform,partner_app",
        "--no-first-release-full-only",
        "--whitelist",
        "--ladder",
        "5,25,100",
        "--json",
    )
    assert created.code == 0
    assert created.json() == {
        "target_app": "truemoney",
        "display_name": "TrueMoney",
        "required_reviewers": ["platform", "partner_app"],
        "first_release_full_only": False,
        "whitelist_allowed": True,
        "grayscale_ladder": [5, 25, 100],
        "official_link_template": None,
        "trial_link_template": None,
    }

    changed = await mpr("admin", "target-app", "set", "--app", "truemoney", "--no-whitelist")
    assert changed.out.splitlines() == [
        "APP        NAME       REVIEWERS             FIRST RELEASE FULL ONLY  WHITELIST  LADDER",
        "truemoney  TrueMoney  platform,partner_app  no                       no         5,25,100",
        "",
        "APP        QR CODE   LINK TEMPLATE",
        "truemoney  official  -",
        "truemoney  trial     -",
    ]

    listing = await mpr("admin", "target-app", "list", "--json")
    assert [app["target_app"] for app in listing.json()] == [
        "alipaycn",
        "dana",
        "gcash",
        "gopay",
        "truemoney",
    ]
    table = (await mpr("admin", "target-app", "list")).out
    assert "alipaycn   Alipay China  platform,partner_app  no" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "gopay", "--ladder", "1,2,50"], "the grayscale ladder must end at 100"),
        (["--app", "gopay", "--ladder", "1,two"], "not a list of percentages"),
        (["--app", "gopay", "--reviewers", "platform,platform"], "duplicate reviewer"),
        (["--app", "gopay", "--reviewers", "press"], "required_reviewers"),
        (["--app", "newapp"], "newapp is a new target app: give --reviewers"),
    ],
)
async def test_invalid_policies_are_usage_errors(mpr: Mpr, args: list[str], message: str) -> None:
    run = await mpr("admin", "target-app", "set", *args)

    assert run.code == 2
    assert message in run.err


# --- QR link templates and trial members ----------------------------------------------------

GOPAY_LINK = "gojek://gopay/mini?id={mini_program_id}&p={page}&q={query}"
GOPAY_TRIAL = f"{GOPAY_LINK}&mpr_trial={{release_id}}"


async def test_link_templates_are_set_listed_and_removed(mpr: Mpr) -> None:
    setting = await mpr("admin", "target-app", "set", "--app", "gopay",
                        "--official-link-template", GOPAY_LINK,
                        "--trial-link-template", GOPAY_TRIAL, "--json")
    assert setting.code == 0, setting.err
    assert (setting.json()["official_link_template"], setting.json()["trial_link_template"]) == (
        GOPAY_LINK, GOPAY_TRIAL)

    listing = (await mpr("admin", "target-app", "list")).out.split("\n\n")[1].splitlines()
    assert listing[0].split() == ["APP", "QR", "CODE", "LINK", "TEMPLATE"]
    assert [line.split() for line in listing[1:] if line.startswith("gopay")] == [
        ["gopay", "official", GOPAY_LINK], ["gopay", "trial", GOPAY_TRIAL]]
    assert ["dana", "official", "-"] in [line.split() for line in listing]
    alipay = [line.split()[2] for line in listing if line.startswith("alipaycn")]
    assert alipay[0].startswith("alipays://platformapi/startapp?appId={mini_program_id}")

    kept = await mpr("admin", "target-app", "set", "--app", "gopay", "--no-whitelist", "--json")
    assert kept.json()["trial_link_template"] == GOPAY_TRIAL, "omitted: kept"
    removed = await mpr("admin", "target-app", "set", "--app", "gopay",
                        "--trial-link-template", "", "--json")
    assert (removed.json()["official_link_template"], removed.json()["trial_link_template"]) == (
        GOPAY_LINK, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--official-link-template", "gojek://x?id={mini_program_id}&v={version}"],
         "invalid input: official: Value error, unknown placeholder {version}"),
        (["--trial-link-template", GOPAY_LINK], "must carry the trial marker"),
        (["--official-link-template", "gopay {mini_program_id}"], "starts with its scheme"),
    ],
)
async def test_invalid_link_templates_are_usage_errors(
    mpr: Mpr, args: list[str], message: str
) -> None:
    run = await mpr("admin", "target-app", "set", "--app", "gopay", *args)

    assert message in run.error(2)
    listing = await mpr("admin", "target-app", "list", "--json")
    assert [app["official_link_template"] for app in listing.json()
            if app["target_app"] == "gopay"] == [None], "nothing changed"


async def test_trial_members_are_added_listed_and_removed(
    mpr: Mpr, db_pool: asyncpg.Pool
) -> None:
    await to_released(db_pool, Release("1.0.0"))
    member = ["--mini-program", "prog", "--user", "tess"]

    added = await mpr("admin", "trial-member", "add", *member)
    assert (added.code, added.out) == (0, "added trial member tess of prog\n")
    again = await mpr("admin", "trial-member", "add", *member, "--json")
    assert again.json() == {"changed": False,
                            "trial_member": {"mini_program_id": "prog", "user_id": "tess"}}
    listing = await mpr("admin", "trial-member", "list", "--mini-program", "prog")
    assert listing.out.splitlines() == ["MINI PROGRAM  USER", "prog          tess"]

    removed = await mpr("admin", "trial-member", "remove", *member)
    assert removed.out == "removed trial member tess of prog\n"
    assert "no such trial member: tess of prog" in (
        await mpr("admin", "trial-member", "remove", *member)).error(1)
    assert (await mpr("admin", "trial-member", "list", "--mini-program", "prog",
                      "--json")).json() == []


async def test_a_trial_member_of_an_unknown_mini_program_is_refused(mpr: Mpr) -> None:
    run = await mpr("admin", "trial-member", "add", "--mini-program", "ghost", "--user", "u")

    assert run.error(1) == ("mpr: unknown mini program 'ghost': the catalog knows a mini "
                            "program once a release of it has started\n")


# --- resolve and migrate ---------------------------------------------------------------------


async def test_resolve_prints_the_version_a_user_gets(mpr: Mpr, db_pool: asyncpg.Pool) -> None:
    query = ["resolve", "--program", "prog", "--app", "gopay", "--user", "alice"]
    nothing = await mpr(*query)
    assert (nothing.code, nothing.out) == (0, "none (nothing released on prog/gopay/production)\n")

    await to_released(db_pool, Release("1.0.0"))

    assert (await mpr(*query)).out == "1.0.0 (stable)\n"
    assert (await mpr(*query, "--json")).json() == {
        "version": "1.0.0",
        "source": "stable",
        "reason": "stable",
    }
    assert (await mpr(*query, "--env", "sandbox")).out.startswith("none")


async def test_resolve_as_launched_from_a_trial_code(mpr: Mpr, db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0"))
    candidate = Release("1.1.0")
    built = package("1.1.0")
    await candidate.move(db_pool, Stage.COMPATIBILITY_TESTING, package=built,
                         package_sha256=built.sha256)
    await candidate.move(db_pool, Stage.READY_TO_APPLY)
    await mpr("admin", "trial-member", "add", "--mini-program", "prog", "--user", "tess")
    query = ["resolve", "--program", "prog", "--app", "gopay", "--trial", candidate.release_id]

    assert (await mpr(*query, "--user", "tess")).out == (
        f"1.1.0 (trial code of {candidate.release_id}, to a trial member)\n")
    assert (await mpr(*query, "--user", "bob", "--json")).json()["source"] == "stable"


async def test_migrate_reports_an_up_to_date_catalog(mpr: Mpr) -> None:
    run = await mpr("migrate")

    assert (run.code, run.out) == (0, "the catalog is up to date\n")
    assert (await mpr("migrate", "--json")).json() == {"applied": []}


# --- the database is somewhere else ----------------------------------------------------------


async def test_an_unreachable_database_is_named_without_its_password(
    mpr: Mpr, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://mpr:s3cret@127.0.0.1:1/catalog")

    run = await mpr("admin", "target-app", "list")

    error = run.error(1)
    assert "cannot reach the catalog database at postgresql://mpr:***@127.0.0.1:1/catalog" in error
    assert "s3cret" not in error


async def test_a_missing_database_url_says_how_to_set_one(
    mpr: Mpr, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")

    run = await mpr("resolve", "--program", "p", "--app", "gopay", "--user", "u")

    assert "DATABASE_URL is not set" in run.error(1)
