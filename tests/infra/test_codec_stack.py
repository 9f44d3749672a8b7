"""`make up`'s payload key: made once, kept private in .data, reused until `make clean`;
an exported MPR_PAYLOAD_KEYS wins; MPR_PAYLOAD_ENCRYPTION=off needs none."""

import stat
from pathlib import Path

import pytest

from mpr.infra import stack
from mpr.infra.codec import KeyRing, new_key_entry


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "payload-keys"
    monkeypatch.setattr(stack, "PAYLOAD_KEYS_FILE", path)
    monkeypatch.delenv("MPR_PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("MPR_PAYLOAD_ENCRYPTION", raising=False)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_key_is_made_once_private_and_reused(key_file: Path) -> None:
    keys = stack._payload_keys()
    assert KeyRing.parse(keys).primary.startswith("stack-")
    assert mode(key_file) == 0o600
    assert stack._payload_keys() == keys, "releases started earlier stay readable"

    key_file.chmod(0o644)
    assert stack._payload_keys() == keys and mode(key_file) == 0o600


def test_exported_keys_win_and_a_dropped_stack_key_is_warned_about(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    own = stack._payload_keys()
    exported = new_key_entry("ops-2026")
    monkeypatch.setenv("MPR_PAYLOAD_KEYS", exported)
    assert stack._payload_keys() == exported
    assert "lacks stack-" in capsys.readouterr().err
    monkeypatch.setenv("MPR_PAYLOAD_KEYS", f"{exported},{own}")
    assert stack._payload_keys() == f"{exported},{own}"
    assert capsys.readouterr().err == ""
    assert key_file.read_text().strip() == own


def test_encryption_off_needs_no_key(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPR_PAYLOAD_ENCRYPTION", "off")
    assert stack._payload_keys() == ""
    assert not key_file.exists()


def test_private_files_are_narrowed_when_they_existed(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    path.write_text("old")
    path.chmod(0o644)
    stack._write_private(path, "MPR_PAYLOAD_KEYS=k:x\n")
    assert mode(path) == 0o600 and path.read_text() == "MPR_PAYLOAD_KEYS=k:x\n"
