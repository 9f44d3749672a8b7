"""The search attributes the workflows keep up to date (no personal data, ever)."""

from temporalio.common import SearchAttributeKey

MINI_PROGRAM_ID = SearchAttributeKey.for_keyword("MiniProgramId")
MINI_PROGRAM_VERSION = SearchAttributeKey.for_keyword("MiniProgramVersion")
TARGET_APP = SearchAttributeKey.for_keyword("TargetApp")
RELEASE_ENVIRONMENT = SearchAttributeKey.for_keyword("ReleaseEnvironment")
RELEASE_STAGE = SearchAttributeKey.for_keyword("ReleaseStage")
GRAYSCALE_PERCENT = SearchAttributeKey.for_int("GrayscalePercent")
# When the release entered its current stage: finds releases stuck in a stage.
RELEASE_STAGE_CHANGED_AT = SearchAttributeKey.for_datetime("ReleaseStageChangedAt")
# Mini service versions (which also set TargetApp, to the super app, and GrayscalePercent).
MINI_SERVICE_STATUS = SearchAttributeKey.for_keyword("MiniServiceStatus")
# Channels (which also set MiniProgramId, TargetApp and ReleaseEnvironment).
CHANNEL_STATE = SearchAttributeKey.for_keyword("ChannelState")
STABLE_VERSION = SearchAttributeKey.for_keyword("StableVersion")

ALL = (
    MINI_PROGRAM_ID,
    MINI_PROGRAM_VERSION,
    TARGET_APP,
    RELEASE_ENVIRONMENT,
    RELEASE_STAGE,
    GRAYSCALE_PERCENT,
    RELEASE_STAGE_CHANGED_AT,
    MINI_SERVICE_STATUS,
    CHANNEL_STATE,
    STABLE_VERSION,
)
