"""The QR code client library: an official or trial code of a mini program, as a PNG or SVG.

    from mpr.catalog.db import create_pool
    from mpr.domain.qr import CodeKind, ImageFormat, QrCodeRefused, QrRequest
    from starters.qr_codes import make_qr_code

    pool = await create_pool(database_url)
    code = await make_qr_code(pool, QrRequest(
        kind=CodeKind.TRIAL, mini_program_id="coffee-shop", target_app="alipaycn",
        version="1.1.0", page="pages/menu/menu", query="table=12",
        image_format=ImageFormat.SVG))
    code.link     # alipays://platformapi/startapp?appId=coffee-shop&...&mpr_trial=release%3A...
    code.content  # the SVG document's bytes; make_qr_code(..., output=path) also writes it

The catalog says what the code is about (mpr.catalog.qr_codes), mpr.domain.qr makes the link
or refuses with `QrCodeRefused` (one line; its `refusal` tells bad input from a state that
forbids the code and from a release that does not exist), and segno draws it: pure Python,
PNG and SVG alike, no imaging library. Codes use error correction level M (15 % of the code
may be damaged) and a quiet zone of four modules, light modules white so the code reads on a
dark page too. Who may make codes is whoever may read the catalog (docs/qr-codes.md).
"""

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import segno
from pydantic import BaseModel, ConfigDict

from mpr.catalog.db import Database
from mpr.catalog.qr_codes import load_code_subject
from mpr.domain.qr import QUIET_ZONE, CodeLink, ImageFormat, QrRequest, plan_code

ERROR_CORRECTION = "m"


class QrCode(BaseModel):
    """A code made: its link and what it is about, and the image."""

    model_config = ConfigDict(frozen=True)

    code: CodeLink
    image_format: ImageFormat
    content: bytes
    """The PNG or SVG file's bytes."""
    pixels: int
    """The image's width and height."""
    path: Path | None = None
    """Where it was written, when it was."""

    @property
    def link(self) -> str:
        return self.code.link


async def make_qr_code(db: Database, request: QrRequest, output: Path | None = None) -> QrCode:
    """The code `request` asks for, written to `output` when given (replacing the file).

    Raises `mpr.domain.qr.QrCodeRefused` when no such code can be made, and
    `mpr.catalog.UnknownTargetApp` for a target app the catalog does not know."""
    subject = await load_code_subject(db, request)
    code = plan_code(request, subject)
    content, pixels = render(code.link, request.image_format, request.scale)
    if output is not None:
        write_atomically(output, content)
    return QrCode(code=code, image_format=request.image_format, content=content,
                  pixels=pixels, path=output)


def render(link: str, image_format: ImageFormat, scale: int) -> tuple[bytes, int]:
    """The image of a QR code carrying `link`, and its size in pixels."""
    qr = segno.make_qr(link, error=ERROR_CORRECTION)
    buffer = io.BytesIO()
    options: dict[str, Any] = {"kind": image_format.value, "scale": scale, "border": QUIET_ZONE,
               "dark": "#000", "light": "#fff"}
    if image_format is ImageFormat.SVG:
        options["xmldecl"] = False  # an SVG document that embeds in HTML as it is
    qr.save(buffer, **options)
    width, _ = qr.symbol_size(scale=scale, border=QUIET_ZONE)
    return buffer.getvalue(), int(width)


def write_atomically(path: Path, content: bytes) -> None:
    """Write the file whole or not at all: a reader never sees half a code."""
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
