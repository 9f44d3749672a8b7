"""What a channel serves, and the states of the versions released on it."""

from enum import StrEnum


class ChannelState(StrEnum):
    NOT_RELEASED = "NOT_RELEASED"
    """No version has been released on the channel yet."""
    ONLINE = "ONLINE"
    """Its stable version is served."""
    OFFLINE = "OFFLINE"
    """Nothing is served; the stable version is kept for bring_online."""


class TakedownKind(StrEnum):
    """Who took a channel offline, which says who may bring it back."""

    ADMIN = "admin"
    """The workspace's or the mini program's admin: undone by an admin, or by a new release."""
    PLATFORM = "platform"
    """A platform reviewer (Alipay's AUDIT_OFFLINE): undone only by a platform reviewer."""
    PARTNER = "partner"
    """The target app's partner reviewer: undone only by a partner reviewer."""


class VersionStatus(StrEnum):
    """Where a version released on a channel stands now."""

    RELEASED = "RELEASED"
    """The stable version, served while the channel is online."""
    ARCHIVED = "ARCHIVED"
    """A newer version was released after it."""
    ROLLED_BACK = "ROLLED_BACK"
    """It was the stable version and a rollback took it down."""


# The release stages in which a release serves its candidate on the channel (by name: a
# lifecycle never imports a sibling's modules).
ROLLING_OUT_STAGES = frozenset({"WHITELIST_TESTING", "GRAYSCALE"})
