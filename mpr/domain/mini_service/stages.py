"""Mini service statuses and the groups of statuses the rules talk about."""

from enum import StrEnum


class ServiceStatus(StrEnum):
    DRAFT = "DRAFT"
    TESTING = "TESTING"
    RELEASING = "RELEASING"
    RELEASED = "RELEASED"
    ARCHIVED = "ARCHIVED"
    DELETED = "DELETED"


FINAL_STATUSES = frozenset({ServiceStatus.ARCHIVED, ServiceStatus.DELETED})
# One version at a time may be shown to testers or rolled out, per super app.
IN_FLIGHT = frozenset({ServiceStatus.TESTING, ServiceStatus.RELEASING})
