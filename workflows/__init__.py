"""Temporal workflows. Modules here are re-imported by the sandbox: no side effects at import."""


def worker_workflows() -> dict[str, type]:
    """The workflows the worker runs, by workflow type name (as histories record it): the one
    list, which `mpr replay` replays too. The modules are imported on the call, not with this
    package, which the sandbox imports again for every workflow it runs."""
    from workflows import channel, mini_service, release

    return {
        release.WORKFLOW_TYPE: release.MiniProgramRelease,
        mini_service.WORKFLOW_TYPE: mini_service.MiniServiceRelease,
        channel.WORKFLOW_TYPE: channel.MiniProgramChannel,
    }
