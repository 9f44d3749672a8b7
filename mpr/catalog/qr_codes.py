"""What the catalog knows of a QR code's subject: the target app's link template, and the
version whose manifest pages the code may open (mpr.domain.qr decides the rest).

An official code is about the channel's stable release (channels.stable_release_id); a trial
code about the release it names. Both read the package manifest the release was built from.
"""

import json
from typing import Any

from mpr.catalog.admin import get_link_templates, require_target_app
from mpr.catalog.db import Database
from mpr.domain.qr import CodeKind, CodeSubject, QrRequest


async def load_code_subject(db: Database, request: QrRequest) -> CodeSubject:
    """The subject of the code `request` asks for; UnknownTargetApp for an unknown app."""
    templates = await get_link_templates(db, request.target_app)
    if templates is None:
        await require_target_app(db, request.target_app)  # raises UnknownTargetApp
    template = templates.of(request.kind) if templates else None
    if request.kind is CodeKind.OFFICIAL:
        row = await db.fetchrow(
            """
            SELECT r.release_id, r.version, r.stage, p.manifest, c.offline_reason
            FROM channels c
            JOIN releases r ON r.release_id = c.stable_release_id
            LEFT JOIN packages p ON p.sha256 = r.package_sha256
            WHERE c.mini_program_id = $1 AND c.target_app = $2 AND c.environment = $3
            """,
            request.mini_program_id,
            request.target_app,
            request.environment.value,
        )
    else:
        row = await db.fetchrow(
            """
            SELECT r.release_id, r.version, r.stage, p.manifest, c.offline_reason
            FROM releases r
            LEFT JOIN packages p ON p.sha256 = r.package_sha256
            LEFT JOIN channels c ON c.mini_program_id = r.mini_program_id
                AND c.target_app = r.target_app AND c.environment = r.environment
            WHERE r.release_id = $1
            """,
            request.release_id,
        )
    if row is None:
        return CodeSubject(template=template)
    return CodeSubject(
        template=template,
        release_id=row["release_id"],
        version=row["version"],
        stage=row["stage"],
        pages=_pages(row["manifest"]),
        offline_reason=row["offline_reason"],
    )


def _pages(manifest: Any) -> list[str]:
    """The manifest's pages; none before the release was built."""
    if manifest is None:
        return []
    if isinstance(manifest, str):  # a connection without the pool's jsonb codec
        manifest = json.loads(manifest)
    pages = manifest.get("pages") if isinstance(manifest, dict) else None
    return [page for page in pages if isinstance(page, str)] if isinstance(pages, list) else []
