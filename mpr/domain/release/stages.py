"""Release stages and the groups of stages the rules talk about."""

from enum import StrEnum


class Stage(StrEnum):
    BUILDING = "BUILDING"
    BUILD_FAILED = "BUILD_FAILED"
    COMPATIBILITY_TESTING = "COMPATIBILITY_TESTING"
    READY_TO_APPLY = "READY_TO_APPLY"
    UNDER_REVIEW = "UNDER_REVIEW"
    REJECTED = "REJECTED"
    RELEASE_PREPARATION = "RELEASE_PREPARATION"
    WHITELIST_TESTING = "WHITELIST_TESTING"
    GRAYSCALE = "GRAYSCALE"
    RELEASED = "RELEASED"
    CANCELED = "CANCELED"


TERMINAL_STAGES = frozenset({Stage.RELEASED, Stage.CANCELED})

# A release holds its channel (program, target app, environment) while in these stages;
# the catalog enforces that only one release at a time does.
CHANNEL_HOLDING_STAGES = frozenset(
    {Stage.UNDER_REVIEW, Stage.RELEASE_PREPARATION, Stage.WHITELIST_TESTING, Stage.GRAYSCALE}
)

# Seed 000: "only basic information can be modified during the release process".
BASIC_INFO_ONLY_STAGES = CHANNEL_HOLDING_STAGES
