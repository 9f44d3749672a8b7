"""Who holds which role on a mini program's releases and channels: the workspace's members,
the mini program's admins, the platform's reviewers and the target app's partner reviewers."""

from mpr.catalog.db import Database
from mpr.domain.core.models import Role

WORKSPACE_ROLES = [Role.OWNER, Role.ADMIN, Role.MASTER, Role.DEVELOPER]


async def program_roles(
    db: Database, *, actor: str, workspace_id: str, mini_program_id: str, target_app: str
) -> list[Role]:
    """The roles `actor` holds on a mini program going to a target app; reviewers are not
    workspace members."""
    rows = await db.fetch(
        """
        SELECT DISTINCT role FROM workspace_members
        WHERE user_id = $1 AND (
            (role = ANY($2::text[]) AND workspace_id = $3)
            OR (role = 'program_admin' AND workspace_id = $3 AND mini_program_id = $4)
            OR role = 'platform_reviewer'
            OR (role = 'partner_reviewer' AND target_app = $5)
        )
        ORDER BY role
        """,
        actor,
        [role.value for role in WORKSPACE_ROLES],
        workspace_id,
        mini_program_id,
        target_app,
    )
    return [Role(row["role"]) for row in rows]
