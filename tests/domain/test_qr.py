"""QR links, pure: templates, pages, queries, trial stages and every refusal's wording."""

import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import ValidationError

from mpr.domain.qr import (
    ALIPAY_OFFICIAL_TEMPLATE,
    ALIPAY_TRIAL_TEMPLATE,
    MAX_LINK_CHARS,
    MAX_QUERY_CHARS,
    MAX_TEMPLATE_CHARS,
    TRIAL_STAGES,
    CodeKind,
    CodeSubject,
    ImageFormat,
    LinkTemplates,
    QrCodeRefused,
    QrRequest,
    Refusal,
    build_link,
    check_template,
    image_format_for,
    plan_code,
    trial_marker,
)
from mpr.domain.release.stages import Stage

PAGES = ["pages/index/index", "pages/menu/menu"]
TRIAL_ID = "release:coffee:1.1.0:alipaycn:production"


def official(**fields: object) -> QrRequest:
    return QrRequest.model_validate(
        {"mini_program_id": "coffee", "target_app": "alipaycn", **fields})


def trial(**fields: object) -> QrRequest:
    return official(kind="trial", version="1.1.0", **fields)


def stable(template: str | None = ALIPAY_OFFICIAL_TEMPLATE, **fields: object) -> CodeSubject:
    return CodeSubject.model_validate({
        "template": template, "release_id": "release:coffee:1.0.0:alipaycn:production",
        "version": "1.0.0", "stage": "RELEASED", "pages": PAGES, **fields})


def candidate(stage: str = "GRAYSCALE", **fields: object) -> CodeSubject:
    return CodeSubject.model_validate({
        "template": ALIPAY_TRIAL_TEMPLATE, "release_id": TRIAL_ID, "version": "1.1.0",
        "stage": stage, "pages": PAGES, **fields})


def refusal(request: QrRequest, subject: CodeSubject) -> tuple[Refusal, str]:
    with pytest.raises(QrCodeRefused) as refused:
        plan_code(request, subject)
    return refused.value.refusal, str(refused.value)


# --- templates -------------------------------------------------------------------------------


def test_alipays_documented_form_is_a_valid_official_template() -> None:
    assert check_template(CodeKind.OFFICIAL, ALIPAY_OFFICIAL_TEMPLATE) == ALIPAY_OFFICIAL_TEMPLATE
    assert check_template(CodeKind.TRIAL, ALIPAY_TRIAL_TEMPLATE) == ALIPAY_TRIAL_TEMPLATE


@pytest.mark.parametrize(
    ("kind", "template", "message"),
    [
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id}/{pgae}",
         "unknown placeholder {pgae} in a link template; "
         "known: {mini_program_id}, {page}, {query}"),
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id}?v={version}",
         "unknown placeholder {version}"),
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id}/{page!r}", "{page!r}"),
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id}/{page:>9}", "{page:>9}"),
        (CodeKind.OFFICIAL, "https://x.test/{}", "unknown placeholder {}"),
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id", "unmatched brace"),
        (CodeKind.OFFICIAL, "https://x.test/}{mini_program_id}", "unmatched brace"),
        (CodeKind.OFFICIAL, "https://x.test/{{mini_program_id}}", "only URI characters"),
        (CodeKind.OFFICIAL, "https://x.test/a b/{mini_program_id}", "only URI characters"),
        (CodeKind.OFFICIAL, "x.test/{mini_program_id}", "starts with its scheme"),
        (CodeKind.OFFICIAL, "https://x.test/{page}", "must contain {mini_program_id}"),
        (CodeKind.OFFICIAL, "https://x.test/" + "a" * MAX_TEMPLATE_CHARS, "at most 512"),
        (CodeKind.OFFICIAL, "https://x.test/{mini_program_id}?mpr_trial=1",
         "must not carry the trial marker"),
        (CodeKind.TRIAL, "https://x.test/{mini_program_id}?v={version}", "trial marker"),
        (CodeKind.TRIAL, "https://x.test/{mini_program_id}/mpr_trial={release_id}",
         "trial marker"),
        (CodeKind.TRIAL, "https://x.test/{mini_program_id}?xmpr_trial={release_id}",
         "trial marker"),
        (CodeKind.TRIAL, "https://x.test/{mini_program_id}?mpr_trial={release_id}x",
         "trial marker"),
        (CodeKind.TRIAL, "https://x.test/{mini_program_id}?mpr_trial={release_id}&b={bad}",
         "unknown placeholder {bad}"),
    ],
)
def test_templates_are_checked_when_set(kind: CodeKind, template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_template(kind, template)


@pytest.mark.parametrize("template", [
    "https://x.test/{mini_program_id}?mpr_trial={release_id}",
    "https://x.test/{mini_program_id}?a=1&mpr_trial={release_id}&v={version}",
    "https://x.test/{mini_program_id}?mpr_trial={release_id}#{page}",
])
def test_the_trial_marker_may_stand_anywhere_in_the_query(template: str) -> None:
    assert LinkTemplates(trial=template).trial == template


def test_link_templates_are_validated_as_a_model() -> None:
    with pytest.raises(ValidationError, match="trial marker"):
        LinkTemplates(trial=ALIPAY_OFFICIAL_TEMPLATE)
    assert LinkTemplates().of(CodeKind.OFFICIAL) is None


# --- links -----------------------------------------------------------------------------------


def test_an_official_link_opens_the_entry_page_by_default() -> None:
    code = plan_code(official(), stable())

    assert code.link == ("alipays://platformapi/startapp?appId=coffee"
                         "&page=pages%2Findex%2Findex&query=")
    assert (code.kind, code.page, code.version, code.notice) == (
        CodeKind.OFFICIAL, "pages/index/index", "1.0.0", None)


def test_every_value_is_percent_encoded_whole() -> None:
    code = plan_code(official(page="pages/menu/menu", query="table=12&promo=spring 2 é"),
                     stable())

    values = parse_qs(urlsplit(code.link).query)
    assert values["page"] == ["pages/menu/menu"]
    assert values["query"] == ["table=12&promo=spring 2 é"], "one parameter, decoded once"
    assert "&promo" not in code.link and " " not in code.link


def test_a_trial_link_carries_its_release_and_version() -> None:
    code = plan_code(trial(), candidate())

    assert trial_marker(code.link) == TRIAL_ID
    assert parse_qs(urlsplit(code.link).query)["nbsv"] == ["1.1.0"]
    assert "nbsn=TRIAL" in code.link
    assert (code.release_id, code.version) == (TRIAL_ID, "1.1.0")


def test_trial_marker_reads_nothing_from_an_official_link() -> None:
    assert trial_marker(plan_code(official(), stable()).link) is None
    assert trial_marker("not a link") is None


def test_a_link_too_long_for_a_code_is_refused() -> None:
    # A query of 256 characters encodes to at most 768; used three times, it cannot fit.
    template = check_template(CodeKind.OFFICIAL,
                              "https://x.test/{mini_program_id}?a={query}&b={query}&c={query}")
    with pytest.raises(QrCodeRefused, match="shorten the query") as refused:
        build_link(template, mini_program_id="p", query="%" * MAX_QUERY_CHARS)
    assert refused.value.refusal is Refusal.INVALID
    assert MAX_LINK_CHARS < 2331, "inside a version-40 code at error correction M"


# --- refusals --------------------------------------------------------------------------------


def test_an_app_without_a_template_is_refused_with_the_command_that_sets_one() -> None:
    assert refusal(official(target_app="gopay"), stable(template=None)) == (
        Refusal.REFUSED,
        "gopay has no official link template: set one with "
        "`mpr admin target-app set --app gopay --official-link-template TEMPLATE`",
    )
    assert refusal(trial(target_app="gopay"), candidate(template=None))[1].endswith(
        "--trial-link-template TEMPLATE`")


def test_an_official_code_needs_a_released_version() -> None:
    assert refusal(official(), CodeSubject(template=ALIPAY_OFFICIAL_TEMPLATE)) == (
        Refusal.REFUSED,
        "nothing is released on coffee/alipaycn/production: an official code opens the "
        "released version; make a trial code instead",
    )


def test_a_trial_code_of_no_release_is_not_found() -> None:
    assert refusal(trial(), CodeSubject(template=ALIPAY_TRIAL_TEMPLATE)) == (
        Refusal.NOT_FOUND, f"no release {TRIAL_ID}")


@pytest.mark.parametrize("stage", sorted(TRIAL_STAGES))
def test_trial_codes_are_made_from_ready_to_apply_to_grayscale(stage: Stage) -> None:
    assert plan_code(trial(), candidate(stage)).version == "1.1.0"


@pytest.mark.parametrize("stage", [
    *sorted(set(Stage) - TRIAL_STAGES), "ARCHIVED", "ROLLED_BACK"])
def test_trial_codes_of_a_release_in_another_stage_are_refused(stage: str) -> None:
    kind, message = refusal(trial(), candidate(stage))

    assert kind is Refusal.REFUSED
    assert message.startswith(
        f"{TRIAL_ID} is {stage}: a trial code is made for a release in READY_TO_APPLY, "
        "UNDER_REVIEW, REJECTED, RELEASE_PREPARATION, WHITELIST_TESTING, GRAYSCALE")
    assert message.endswith("make an official code instead") == (stage == "RELEASED")


def test_a_page_not_in_the_manifest_is_refused_listing_its_pages() -> None:
    assert refusal(official(page="pages/cart/cart"), stable()) == (
        Refusal.INVALID,
        "'pages/cart/cart' is not a page of version 1.0.0; its pages: pages/index/index, "
        "pages/menu/menu",
    )


def test_a_version_without_pages_is_refused() -> None:
    assert refusal(trial(), candidate(pages=[])) == (
        Refusal.REFUSED, "version 1.1.0 has no pages in its manifest")


def test_a_page_or_query_the_template_cannot_carry_is_refused() -> None:
    bare = stable(template="https://x.test/open/{mini_program_id}")
    assert plan_code(official(), bare).link == "https://x.test/open/coffee"
    assert refusal(official(query="a=1"), bare) == (
        Refusal.INVALID, "the official link template of alipaycn has no {query}")
    assert refusal(official(page="pages/menu/menu"), bare) == (
        Refusal.INVALID, "the official link template of alipaycn has no {page}")


def test_an_offline_channel_still_gets_its_code_with_a_notice() -> None:
    code = plan_code(official(), stable(offline_reason="fraud report"))

    assert code.notice == ("coffee/alipaycn/production is offline (fraud report): the code "
                           "opens nothing until it is back online")


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"query": "q" * (MAX_QUERY_CHARS + 1)}, "at most 256 characters"),
        ({"query": "a=1\n"}, "printable"),
        ({"scale": 0}, "greater than or equal to 1"),
        ({"scale": 41}, "less than or equal to 40"),
        ({"version": "1.0.0"}, "an official code none"),
        ({"kind": "trial"}, "a trial code names its release's version"),
        ({"mini_program_id": "a b"}, "mini_program_id"),
        ({"page": ""}, "at least 1 character"),
    ],
)
def test_requests_are_bounded(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        official(**fields)


def test_a_trial_request_names_its_release() -> None:
    assert trial().release_id == TRIAL_ID
    assert official().release_id is None


@pytest.mark.parametrize(
    ("explicit", "suffix", "expected"),
    [
        (None, "", ImageFormat.PNG),
        (None, ".svg", ImageFormat.SVG),
        (None, ".PNG", ImageFormat.PNG),
        (ImageFormat.SVG, "", ImageFormat.SVG),
        (ImageFormat.SVG, ".svg", ImageFormat.SVG),
    ],
)
def test_the_format_comes_from_the_option_or_the_extension(
    explicit: ImageFormat | None, suffix: str, expected: ImageFormat
) -> None:
    assert image_format_for(explicit, suffix) is expected


@pytest.mark.parametrize(("explicit", "suffix", "message"), [
    (None, ".jpg", "cannot write a QR code as .jpg: name the file .png or .svg"),
    (ImageFormat.PNG, ".svg", "--format png does not match the file's extension .svg"),
])
def test_a_format_the_file_name_contradicts_is_refused(
    explicit: ImageFormat | None, suffix: str, message: str
) -> None:
    with pytest.raises(QrCodeRefused) as refused:
        image_format_for(explicit, suffix)
    assert (refused.value.refusal, str(refused.value)) == (Refusal.INVALID, message)


def test_the_decoded_query_round_trips() -> None:
    query = "a=1&b=%41"
    link = build_link("https://x.test/{mini_program_id}?q={query}", mini_program_id="p",
                      query=query)
    assert unquote(link.split("q=", 1)[1]) == query
