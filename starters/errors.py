"""The errors the client libraries share: neither releases' nor mini services' own.

Every failure `starters.releases.ReleaseClient` and `starters.mini_services.MiniServiceClient`
report on purpose is a `ClientError`. Both raise `TemporalUnreachable` as it is; the other
errors here are the bases each client derives its own from, worded for its lifecycle and
carrying what its workflows tell (a release's stage, a mini service version's status):

    neutral             release               mini service
    WorkflowNotFound    ReleaseNotFound       ServiceNotFound
    WorkflowFinished    ReleaseFinished       ServiceFinished
    WorkflowFailed      ReleaseFailed         ServiceFailed
    WorkflowStarting    ReleaseStarting       ServiceStarting
    WorkflowRefused     CommandRefused        ServiceCommandRefused

so that code handling both lifecycles alike (such as `mpr`'s exit codes) catches the neutral
error, and code using one client catches that client's.
"""


class ClientError(Exception):
    """Base of every failure the client libraries report on purpose."""


class TemporalUnreachable(ClientError):
    def __init__(self, address: str, detail: str = "") -> None:
        because = f" ({' '.join(detail.split())})" if detail else ""
        super().__init__(
            f"cannot reach Temporal at {address}{because}; is the server up? "
            "(`make up` starts one; TEMPORAL_ADDRESS points elsewhere)"
        )
        self.address = address


class WorkflowError(ClientError):
    """A failure about one workflow, named by its id."""

    def __init__(self, message: str, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class WorkflowNotFound(WorkflowError):
    """There is no such workflow."""


class WorkflowFinished(WorkflowError):
    """The workflow is closed: it takes no more commands."""


class WorkflowFailed(WorkflowError):
    """The workflow failed; in practice its start input was refused."""

    def __init__(self, message: str, workflow_id: str, reason: str) -> None:
        super().__init__(message, workflow_id)
        self.reason = reason


class WorkflowStarting(WorkflowError):
    """The workflow has not loaded its policy yet (a catalog outage makes this last)."""


class WorkflowRefused(WorkflowError):
    """The workflow refused a command; `reason` is its own words."""

    def __init__(self, message: str, workflow_id: str, command: str, reason: str) -> None:
        super().__init__(message, workflow_id)
        self.command = command
        self.reason = reason
