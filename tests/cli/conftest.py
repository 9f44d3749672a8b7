"""Helpers for the `mpr` and client library tests, on the shared stack of tests/stack.py."""

import uuid
from pathlib import Path

from mpr.domain.release.models import StartInput

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "coffee-shop"
# One cell per release: these tests drive releases; the matrix is tested elsewhere.
ONE_CELL = {"operating_systems": ["ios"], "networks": ["wifi"], "device_tiers": ["high"]}

def new_program() -> str:
    return f"coffee-{uuid.uuid4().hex[:8]}"


def start_input(program: str, version: str = "1.0.0", target_app: str = "gopay",
                source: Path | None = None) -> StartInput:
    return StartInput.model_validate({
        "mini_program_id": program, "version": version, "target_app": target_app,
        "workspace_id": "ws-e2e", "requested_by": "dev",
        "source": str(source or SAMPLES / version),
        "config": {"basic_info": {"name": "Coffee Shop"}, "compatibility": ONE_CELL},
    })


