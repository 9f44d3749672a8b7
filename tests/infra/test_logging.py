"""Logging as a worker process does it: every line on stderr is one JSON object, also when our
structlog lines and the SDK's standard-library lines are written from several threads at once."""

import json
import subprocess
import sys
import textwrap

LINES_PER_THREAD = 2_000

LOGGING_FROM_THREADS = textwrap.dedent(f"""
    import logging
    import threading

    from structlog.contextvars import bound_contextvars

    from mpr.infra.logging import configure_logging, get_logger

    configure_logging("INFO", "json")
    ours = get_logger("activities.build")
    sdk = logging.getLogger("temporalio.workflow")

    def from_structlog():
        with bound_contextvars(release_id="release:a"):
            for n in range({LINES_PER_THREAD}):
                ours.info("build finished", n=n, padding="x" * 300)

    def from_stdlib():
        for n in range({LINES_PER_THREAD}):
            sdk.info("release moved", extra={{"temporal_workflow": {{"workflow_id": "w", "n": n}}}})

    threads = [threading.Thread(target=job) for job in (from_structlog, from_stdlib) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        ours.exception("build failed")
""")


def test_lines_from_structlog_and_the_sdk_never_interleave() -> None:
    finished = subprocess.run([sys.executable, "-c", LOGGING_FROM_THREADS],
                              capture_output=True, text=True, timeout=120, check=True)
    lines = [json.loads(raw) for raw in finished.stderr.splitlines()]

    events = [line["event"] for line in lines]
    assert events.count("build finished") == 2 * LINES_PER_THREAD
    assert events.count("release moved") == 2 * LINES_PER_THREAD
    ours = next(line for line in lines if line["event"] == "build finished")
    assert ours["release_id"] == "release:a" and ours["level"] == "info" and ours["timestamp"]
    sdk = next(line for line in lines if line["event"] == "release moved")
    assert sdk["workflow_id"] == sdk["release_id"] == "w"
    assert sdk["logger"] == "temporalio.workflow"
    failed = lines[-1]
    assert failed["event"] == "build failed" and failed["level"] == "error"
    assert "RuntimeError: disk full" in failed["exception"]
