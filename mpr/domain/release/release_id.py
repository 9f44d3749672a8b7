"""The workflow id of a release.

Format: `release:{mini_program_id}:{version}:{target_app}:{environment}`.
"""

from mpr.domain.release.models import Environment

PREFIX = "release"


def release_id(mini_program_id: str, version: str, target_app: str, environment: str) -> str:
    return f"{PREFIX}:{mini_program_id}:{version}:{target_app}:{Environment(environment).value}"


def parse_release_id(value: str) -> tuple[str, str, str, Environment]:
    """Split a release id into (mini_program_id, version, target_app, environment)."""
    parts = value.split(":")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise ValueError(
            f"not a release id: {value!r} "
            "(expected release:{mini_program_id}:{version}:{target_app}:{environment})"
        )
    _, program, version, app, environment = parts
    try:
        env = Environment(environment)
    except ValueError:
        raise ValueError(f"unknown environment {environment!r} in release id {value!r}") from None
    return program, version, app, env
