"""The fast lane's guard (tests/conftest.py): a test not marked e2e may not start a server."""

import pytest

from tests import conftest as lanes


@pytest.mark.parametrize("command", [
    ["temporal", "server", "start-dev", "--port", "7233"],
    ["/venv/bin/temporal", "workflow", "list"],
    ["tctl", "workflow", "list"],
    ["/usr/bin/python3", "-m", "workers.main"],
    ["python", "-m", "mpr.infra.stack", "up"],
    "temporal operator namespace list",
])
def test_a_fast_test_starting_a_server_is_stopped(
    monkeypatch: pytest.MonkeyPatch, command: list[str] | str
) -> None:
    monkeypatch.setattr(lanes, "_fast_test", "tests/test_x.py::test_y")
    with pytest.raises(RuntimeError, match=r"test_y starts .* but is not marked e2e"):
        lanes._refuse_servers_outside_e2e("subprocess.Popen", ("exe", command, None, None))


@pytest.mark.parametrize("command", [
    ["temporal-test-server", "7233"],
    ["python", "-m", "mpr.infra.codec", "new-key"],
    ["git", "log", "--grep", "temporality"],
    ["/opt/temporal-tools/bin/pg_ctl", "start"],
])
def test_other_commands_and_e2e_tests_may_run(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setattr(lanes, "_fast_test", "tests/test_x.py::test_y")
    lanes._refuse_servers_outside_e2e("subprocess.Popen", ("exe", command, None, None))
    monkeypatch.setattr(lanes, "_fast_test", None)  # an e2e test is running
    lanes._refuse_servers_outside_e2e("subprocess.Popen", ("exe", ["temporal"], None, None))


def test_tests_are_marked_from_the_fixtures_they_use(request: pytest.FixtureRequest) -> None:
    """This very test uses no stack fixture, so it is in the fast lane."""
    assert request.node.get_closest_marker("e2e") is None
    assert lanes._fast_test == request.node.nodeid
