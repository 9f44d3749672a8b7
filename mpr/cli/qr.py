"""`mpr qr`: QR codes of a mini program (docs/qr-codes.md), read from the catalog alone.

    mpr qr official --program coffee-shop --app alipaycn --page pages/menu/menu --query table=12
    mpr qr trial release:coffee-shop:1.1.0:alipaycn:production --output trial.svg
    mpr qr trial --program coffee-shop --version 1.1.0 --app alipaycn --format svg --scale 4

An official code opens whatever the channel serves; a trial code opens one release's version
(READY_TO_APPLY to GRAYSCALE) for its testers only. Both print the file written and the link
the code carries. Like `mpr admin` and `mpr resolve`, it needs the catalog's DATABASE_URL and
no identity token: whoever may read the catalog may make codes.

Exit codes are those of cli.main: 0 done, 1 failure (the catalog, the file), 2 usage (a page
the version does not have, a query too long, a format the file name contradicts), 3 refused
(no link template, nothing released, a release in another stage), 4 no such release.
"""

import argparse
from pathlib import Path

from mpr.cli.catalog_access import open_catalog
from mpr.cli.output import CliError, Subcommands, add_json_flag, emit
from mpr.domain.qr import (
    DEFAULT_SCALE,
    MAX_QUERY_CHARS,
    MAX_SCALE,
    CodeKind,
    ImageFormat,
    QrCodeRefused,
    QrRequest,
    Refusal,
    image_format_for,
)
from mpr.domain.release.models import Environment
from mpr.domain.release.release_id import parse_release_id
from mpr.infra.exit_codes import FAILURE, NOT_FOUND, REFUSED, USAGE
from starters.qr_codes import QrCode, make_qr_code, write_atomically

EXIT_CODES = {Refusal.INVALID: USAGE, Refusal.REFUSED: REFUSED, Refusal.NOT_FOUND: NOT_FOUND}


def register(commands: Subcommands) -> None:
    qr = commands.add_parser("qr", help="make an official or trial QR code of a mini program")
    kinds = qr.add_subparsers(dest="kind", required=True, metavar="KIND")
    official = kinds.add_parser("official", help="a code opening what the channel serves")
    official.add_argument("--program", required=True, help="mini program id")
    official.add_argument("--app", required=True, help="target app")
    official.add_argument("--env", default=Environment.PRODUCTION.value,
                          choices=[env.value for env in Environment])
    trial = kinds.add_parser(
        "trial", help="a code opening one release's version, for its testers only"
    )
    trial.add_argument("release", nargs="?", metavar="RELEASE_ID",
                       help="e.g. release:coffee-shop:1.1.0:alipaycn:production")
    trial.add_argument("--program", help="mini program id (with --version and --app)")
    trial.add_argument("--version", help="the release's version")
    trial.add_argument("--app", help="target app")
    trial.add_argument("--env", choices=[env.value for env in Environment],
                       help="environment (default production)")
    for parser in (official, trial):
        _add_image_options(parser)
        parser.set_defaults(handler=_make)


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", help="a page of the version's manifest (default: its first)")
    parser.add_argument("--query", default="",
                        help=f"the page's query, e.g. table=12 (at most {MAX_QUERY_CHARS} "
                             "characters; encoded into the link)")
    parser.add_argument("--format", choices=[fmt.value for fmt in ImageFormat],
                        help="png or svg (default: the output's extension, else png)")
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                        help=f"pixels per module, 1 to {MAX_SCALE} (default {DEFAULT_SCALE})")
    parser.add_argument("--output", type=Path,
                        help="the file to write (default: named after the code, here)")
    add_json_flag(parser)


def _request(args: argparse.Namespace) -> QrRequest:
    output: Path | None = args.output
    image_format = image_format_for(ImageFormat(args.format) if args.format else None,
                                    output.suffix if output else "")
    subject = _release(args) if args.kind == CodeKind.TRIAL else {
        "mini_program_id": args.program, "target_app": args.app, "environment": args.env}
    return QrRequest.model_validate({
        "kind": args.kind, **subject, "page": args.page, "query": args.query,
        "image_format": image_format, "scale": args.scale,
    })


def _release(args: argparse.Namespace) -> dict[str, str]:
    """The trial code's release, by its id or by --program, --version and --app."""
    parts = {"--program": args.program, "--version": args.version, "--app": args.app}
    if args.release:
        if any(parts.values()) or args.env:
            raise CliError("name the release by its id or by --program/--version/--app, "
                           "not both", USAGE)
        try:
            program, version, app, env = parse_release_id(args.release)
        except ValueError as error:
            raise CliError(str(error), USAGE) from None
        return {"mini_program_id": program, "version": version, "target_app": app,
                "environment": env.value}
    missing = [flag for flag, value in parts.items() if not value]
    if len(missing) == len(parts):
        raise CliError("which release? give RELEASE_ID, or --program, --version and --app", USAGE)
    if missing:
        raise CliError(f"missing {', '.join(missing)} to name the release", USAGE)
    return {"mini_program_id": args.program, "version": args.version, "target_app": args.app,
            "environment": args.env or Environment.PRODUCTION.value}


def default_output(request: QrRequest) -> Path:
    """`coffee-shop-alipaycn-production-official.png`, `...-1.1.0-trial.svg`."""
    parts = [request.mini_program_id, request.target_app, request.environment.value]
    parts += [request.version, "trial"] if request.version else ["official"]
    return Path(f"{'-'.join(parts)}.{request.image_format.value}")


async def _make(args: argparse.Namespace) -> None:
    try:
        request = _request(args)
        async with open_catalog() as db:
            made = await make_qr_code(db, request)
    except QrCodeRefused as refused:
        raise CliError(str(refused), EXIT_CODES[refused.refusal]) from None
    output: Path = args.output or default_output(request)
    try:
        write_atomically(output, made.content)
    except OSError as error:
        raise CliError(f"cannot write {output}: {error.strerror or error}", FAILURE) from None
    code = made.model_copy(update={"path": output})
    emit(args, _json(code), _text(code))


def _text(code: QrCode) -> str:
    lines = [str(code.path), code.link]
    if code.code.notice:
        lines.append(f"note: {code.code.notice}")
    return "\n".join(lines)


def _json(code: QrCode) -> dict[str, object]:
    return {
        "path": str(code.path),
        "format": code.image_format.value,
        "pixels": code.pixels,
        **code.code.model_dump(mode="json"),
    }
