"""QR codes against PostgreSQL: link templates and trial members in the catalog, the subject of
a code, and `starters.qr_codes.make_qr_code` end to end, its images read by a real decoder."""

import asyncio
import io
from pathlib import Path

import asyncpg
import pytest
import resvg_py
import segno
import zxingcpp
from PIL import Image

from mpr.catalog import UnknownTargetApp
from mpr.catalog.admin import (
    MAX_TRIAL_MEMBERS,
    TooManyTrialMembers,
    TrialMember,
    UnknownMiniProgram,
    add_trial_member,
    get_link_templates,
    list_link_templates,
    list_trial_members,
    remove_trial_member,
    set_link_templates,
)
from mpr.catalog.qr_codes import load_code_subject
from mpr.domain.qr import (
    ALIPAY_OFFICIAL_TEMPLATE,
    ALIPAY_TRIAL_TEMPLATE,
    QUIET_ZONE,
    CodeKind,
    CodeSubject,
    ImageFormat,
    LinkTemplates,
    QrCodeRefused,
    QrRequest,
    Refusal,
    trial_marker,
)
from mpr.domain.release.models import AppManifest, PackageFacts
from mpr.domain.release.stages import Stage
from starters.qr_codes import make_qr_code, render
from tests.catalog.factories import Release, package, to_released

PAGES = ["pages/index/index", "pages/menu/menu", "pages/cart/cart"]


def decoded(content: bytes, image_format: ImageFormat) -> list[str]:
    """The texts of the QR codes a real decoder (zxing-cpp) finds in the image; an SVG is
    rasterised first (resvg, from its wheel)."""
    png = (resvg_py.svg_to_bytes(svg_string=content.decode()) if image_format is ImageFormat.SVG
           else content)
    barcodes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert all(barcode.format == zxingcpp.BarcodeFormat.QRCode for barcode in barcodes)
    return [barcode.text for barcode in barcodes]


def built(version: str, pages: list[str] = PAGES) -> PackageFacts:
    facts = package(f"{version}-{'-'.join(pages)}")
    return facts.model_copy(update={
        "manifest": AppManifest(name="Coffee Shop", version=version, pages=pages)})


async def ready(pool: asyncpg.Pool, release: Release, pages: list[str] = PAGES) -> None:
    facts = built(release.row.version, pages)
    await release.move(pool, Stage.COMPATIBILITY_TESTING, package=facts,
                       package_sha256=facts.sha256)
    await release.move(pool, Stage.READY_TO_APPLY)


def request(**fields: object) -> QrRequest:
    return QrRequest.model_validate({"mini_program_id": "prog", "target_app": "alipaycn",
                                     **fields})


# --- templates -------------------------------------------------------------------------------


async def test_alipaycn_is_seeded_with_its_templates_and_the_others_are_not(
    db_pool: asyncpg.Pool,
) -> None:
    assert await list_link_templates(db_pool) == {
        "alipaycn": LinkTemplates(official=ALIPAY_OFFICIAL_TEMPLATE, trial=ALIPAY_TRIAL_TEMPLATE),
        "dana": LinkTemplates(),
        "gcash": LinkTemplates(),
        "gopay": LinkTemplates(),
    }


async def test_templates_are_set_replaced_and_removed(db_pool: asyncpg.Pool) -> None:
    templates = LinkTemplates(official="gojek://gopay/mini?id={mini_program_id}&p={page}")
    await set_link_templates(db_pool, "gopay", templates)
    assert await get_link_templates(db_pool, "gopay") == templates

    await set_link_templates(db_pool, "gopay", LinkTemplates())
    assert await get_link_templates(db_pool, "gopay") == LinkTemplates()
    assert await get_link_templates(db_pool, "wechat") is None
    with pytest.raises(UnknownTargetApp):
        await set_link_templates(db_pool, "wechat", templates)


async def test_the_database_keeps_a_trial_template_naming_its_release(
    db_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db_pool.execute("UPDATE target_app_policies SET trial_link_template = $1 "
                              "WHERE target_app = 'gopay'", ALIPAY_OFFICIAL_TEMPLATE)


# --- trial members ---------------------------------------------------------------------------


async def test_trial_members_are_added_listed_and_removed(db_pool: asyncpg.Pool) -> None:
    await ready(db_pool, Release("1.0.0"))
    tess, tom = (TrialMember(mini_program_id="prog", user_id=u) for u in ("tess", "tom"))

    assert [await add_trial_member(db_pool, m) for m in (tom, tess, tess)] == [True, True, False]
    assert await list_trial_members(db_pool, "prog") == [tess, tom]
    assert await list_trial_members(db_pool, "other") == []

    assert await remove_trial_member(db_pool, tess) is True
    assert await remove_trial_member(db_pool, tess) is False
    assert await list_trial_members(db_pool, "prog") == [tom]


async def test_trial_members_belong_to_a_mini_program_the_catalog_knows(
    db_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(UnknownMiniProgram, match="unknown mini program 'ghost'"):
        await add_trial_member(db_pool, TrialMember(mini_program_id="ghost", user_id="tess"))


async def test_trial_members_are_bounded_even_when_added_at_once(db_pool: asyncpg.Pool) -> None:
    await ready(db_pool, Release("1.0.0"))
    await db_pool.execute(
        "INSERT INTO trial_members (mini_program_id, user_id) "
        "SELECT 'prog', 'u' || n FROM generate_series(1, $1::int) AS n", MAX_TRIAL_MEMBERS - 2)

    results = await asyncio.gather(
        *(add_trial_member(db_pool, TrialMember(mini_program_id="prog", user_id=f"new{n}"))
          for n in range(4)),
        return_exceptions=True,
    )

    assert sorted(map(repr, results)) == sorted(
        [repr(True)] * 2 + [repr(TooManyTrialMembers("prog"))] * 2)
    assert len(await list_trial_members(db_pool, "prog")) == MAX_TRIAL_MEMBERS
    again = TrialMember(mini_program_id="prog", user_id="u1")
    assert await add_trial_member(db_pool, again) is False, "a member already is one, full or not"


# --- the subject of a code -------------------------------------------------------------------


async def test_an_official_code_is_about_the_channels_stable_release(
    db_pool: asyncpg.Pool,
) -> None:
    stable = Release("1.0.0", app="alipaycn")
    await to_released(db_pool, stable)

    assert await load_code_subject(db_pool, request()) == CodeSubject(
        template=ALIPAY_OFFICIAL_TEMPLATE, release_id=stable.release_id, version="1.0.0",
        stage="RELEASED", pages=["pages/index"])
    nothing = await load_code_subject(db_pool, request(environment="sandbox"))
    assert nothing == CodeSubject(template=ALIPAY_OFFICIAL_TEMPLATE)


async def test_a_trial_code_is_about_its_release(db_pool: asyncpg.Pool) -> None:
    candidate = Release("1.1.0", app="alipaycn")
    await ready(db_pool, candidate)

    subject = await load_code_subject(db_pool, request(kind="trial", version="1.1.0"))

    assert subject == CodeSubject(template=ALIPAY_TRIAL_TEMPLATE, release_id=candidate.release_id,
                                  version="1.1.0", stage="READY_TO_APPLY", pages=PAGES)
    missing = await load_code_subject(db_pool, request(kind="trial", version="9.0.0"))
    assert missing == CodeSubject(template=ALIPAY_TRIAL_TEMPLATE)


async def test_a_code_for_an_unknown_target_app_names_the_known_ones(
    db_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(UnknownTargetApp, match="known target apps: alipaycn, dana"):
        await load_code_subject(db_pool, request(target_app="wechat"))


# --- make_qr_code: the client library --------------------------------------------------------


@pytest.mark.parametrize("image_format", list(ImageFormat))
async def test_an_official_code_decodes_to_its_link(
    db_pool: asyncpg.Pool, tmp_path: Path, image_format: ImageFormat
) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))
    output = tmp_path / f"code.{image_format}"

    code = await make_qr_code(
        db_pool, request(query="table=12&promo=spring", image_format=image_format), output)

    assert code.link == ("alipays://platformapi/startapp?appId=prog&page=pages%2Findex"
                         "&query=table%3D12%26promo%3Dspring")
    assert decoded(code.content, image_format) == [code.link]
    assert output.read_bytes() == code.content and code.path == output
    assert code.image_format is image_format


async def test_a_trial_code_decodes_to_a_link_resolve_version_understands(
    db_pool: asyncpg.Pool,
) -> None:
    candidate = Release("1.1.0", app="alipaycn")
    await ready(db_pool, candidate)

    code = await make_qr_code(db_pool, request(kind="trial", version="1.1.0",
                                               page="pages/menu/menu"))

    [link] = decoded(code.content, ImageFormat.PNG)
    assert link == code.link and trial_marker(link) == candidate.release_id
    assert code.path is None, "nothing written unless asked"


def test_an_svg_holds_the_same_modules_as_the_png() -> None:
    link = "alipays://platformapi/startapp?appId=prog&page=pages%2Findex&query="
    png, png_pixels = render(link, ImageFormat.PNG, 3)
    svg, svg_pixels = render(link, ImageFormat.SVG, 3)
    expected = segno.make_qr(link, error="m")

    assert png_pixels == svg_pixels == (expected.symbol_size(border=QUIET_ZONE)[0]) * 3
    assert Image.open(io.BytesIO(png)).size == (png_pixels, png_pixels)
    rasterised = Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_string=svg.decode())))
    assert rasterised.size == (svg_pixels, svg_pixels)
    # Module by module: the centre pixel of each module is dark in both or in neither.
    gray_png = Image.open(io.BytesIO(png)).convert("L")
    gray_svg = rasterised.convert("L")
    modules = png_pixels // 3
    for y in range(modules):
        for x in range(modules):
            centre = (x * 3 + 1, y * 3 + 1)
            assert (gray_png.getpixel(centre) < 128) == (gray_svg.getpixel(centre) < 128)


async def test_the_scale_sets_the_size_within_bounds(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))

    small = await make_qr_code(db_pool, request(scale=1))
    large = await make_qr_code(db_pool, request(scale=12))

    assert large.pixels == small.pixels * 12
    assert decoded(large.content, ImageFormat.PNG) == [large.link]


async def test_refusals_reach_the_caller_as_one_line(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(QrCodeRefused) as no_template:
        await make_qr_code(db_pool, request(target_app="gopay"))
    assert str(no_template.value) == (
        "gopay has no official link template: set one with "
        "`mpr admin target-app set --app gopay --official-link-template TEMPLATE`")
    with pytest.raises(QrCodeRefused, match="nothing is released on prog/alipaycn/production"):
        await make_qr_code(db_pool, request())

    canceled = Release("1.1.0", app="alipaycn")
    await ready(db_pool, canceled)
    await canceled.move(db_pool, Stage.CANCELED)
    with pytest.raises(QrCodeRefused, match=f"{canceled.release_id} is CANCELED") as stage:
        await make_qr_code(db_pool, request(kind="trial", version="1.1.0"))
    assert stage.value.refusal is Refusal.REFUSED


async def test_a_trial_code_checks_the_releases_own_pages(db_pool: asyncpg.Pool) -> None:
    await to_released(db_pool, Release("1.0.0", app="alipaycn"))
    await ready(db_pool, Release("1.1.0", app="alipaycn"), pages=["pages/new/new"])

    trial = await make_qr_code(db_pool, request(kind=CodeKind.TRIAL, version="1.1.0"))
    assert "page=pages%2Fnew%2Fnew" in trial.link
    with pytest.raises(QrCodeRefused, match=r"its pages: pages/index$"):
        await make_qr_code(db_pool, request(page="pages/new/new"))
