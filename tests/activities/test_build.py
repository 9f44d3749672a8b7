"""build_package through ActivityEnvironment: safe reading, deterministic bundles, errors,
heartbeats, cancellation and logging."""

import asyncio
import hashlib
import io
import os
import stat
import struct
import tarfile
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
from temporalio.exceptions import ApplicationError

from activities.progress import Cancelled, Progress
from activities.release import build as build_module
from activities.release.build import BuildActivities
from activities.release.package_source import Limits, read_source
from mpr.domain.release.models import BuildRequest, PackageFacts
from tests.activities.conftest import Build, RecordingEnvironment

MiB = 1024 * 1024
APP_JSON = b'{"name": "Tiny", "version": "1.0.0", "pages": ["pages/index/index"]}'
TREE = {
    "app.json": APP_JSON,
    "pages/index/index.axml": b"<view>hello</view>",
    "pages/index/index.js": b"Page({});",
    "assets/logo.svg": b"<svg/>" * 50,
}
SMALL = Limits(max_files=10, max_file_bytes=MiB, max_total_bytes=2 * MiB)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def write_zip(path: Path, entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return path


def write_tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member, content in members:
            member.size = len(content) if member.isreg() else 0
            archive.addfile(member, io.BytesIO(content) if member.isreg() else None)
    return path


def stored_at(artifact_dir: Path, sha256: str) -> str:
    return str(artifact_dir.resolve() / sha256[:2] / f"{sha256}.zip")


def artifact_bytes(package: PackageFacts) -> bytes:
    return Path(package.artifact_path).read_bytes()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def regular_members(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(member(name), content) for name, content in files.items()]


async def refusal(build: Build, source: Path, **kwargs: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await build(source, **kwargs)
    error = caught.value
    assert error.type == "InvalidPackage"
    assert error.non_retryable
    return error


# --- Building --------------------------------------------------------------------------------


async def test_the_sample_builds_into_a_content_addressed_bundle(
    build: Build, samples: Path, artifact_dir: Path
) -> None:
    package = await build(samples / "1.0.0", "1.0.0")

    assert package.artifact_path == stored_at(artifact_dir, package.sha256)
    data = artifact_bytes(package)
    assert hashlib.sha256(data).hexdigest() == package.sha256
    assert package.size_bytes == len(data)
    sample_files = [p for p in (samples / "1.0.0").rglob("*") if p.is_file()]
    assert package.file_count == len(sample_files) == 15
    assert package.uncompressed_bytes == sum(p.stat().st_size for p in sample_files)
    assert package.manifest.name == "Coffee Shop"
    assert package.manifest.pages == ["pages/index/index", "pages/menu/menu", "pages/cart/cart"]
    assert package.manifest.min_base_version == "2.6.0"
    assert "my.tradePay" in package.manifest.jsapis


async def test_the_bundle_is_a_normalised_zip(build: Build, tmp_path: Path) -> None:
    package = await build(write_tree(tmp_path / "src", TREE))

    with zipfile.ZipFile(package.artifact_path) as archive:
        entries = archive.infolist()
        assert archive.comment == b""
        assert {name: archive.read(name) for name in archive.namelist()} == TREE
    assert [e.filename for e in entries] == sorted(TREE)
    for entry in entries:
        assert entry.date_time == (1980, 1, 1, 0, 0, 0)
        assert entry.external_attr == (stat.S_IFREG | 0o644) << 16
        assert entry.create_system == 3
        assert entry.compress_type == zipfile.ZIP_DEFLATED
        assert entry.extra == b""
        assert not entry.is_dir()


async def test_builds_are_byte_identical_whatever_the_source_form(
    build: Build, builder: BuildActivities, tmp_path: Path
) -> None:
    folder = write_tree(tmp_path / "src", TREE)
    first = await build(folder)

    # Same files, different metadata, order, folder entries, junk and container.
    for path in folder.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        if path.is_file():
            path.chmod(0o600)
    zipped = tmp_path / "src.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("pages/", b"")
        for name in sorted(TREE, reverse=True):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 5, 6, 7, 8, 10)), TREE[name])
        archive.writestr("__MACOSX/._app.json", b"\x00\x05\x16\x07")
        archive.writestr("pages/.DS_Store", b"Bud1")
    tarball = tmp_path / "src.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=".")

    other_dir = BuildActivities(tmp_path / "elsewhere", [tmp_path])
    results = [
        await build(folder),
        await build(zipped),
        await build(tarball),
        await build(folder, activities=other_dir),
    ]

    assert {r.sha256 for r in results} == {first.sha256}
    assert {artifact_bytes(r) for r in results} == {artifact_bytes(first)}
    assert results[3].artifact_path != first.artifact_path


async def test_storing_is_idempotent(build: Build, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "src", TREE)
    first = await build(folder)
    before = os.stat(first.artifact_path)

    second = await build(folder)

    after = os.stat(second.artifact_path)
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.listdir(Path(first.artifact_path).parent) == [f"{first.sha256}.zip"]


async def test_an_unwritable_artifact_dir_is_a_retryable_error(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "src", TREE)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    builder = BuildActivities(blocker, [tmp_path])
    request = BuildRequest(release_id="r", mini_program_id="p", version="1.0.0", source=str(folder))

    with pytest.raises(OSError):
        await RecordingEnvironment().run(builder.build_package, request)


# --- Bad packages ----------------------------------------------------------------------------


async def test_manifest_problems_fail_the_build(build: Build, samples: Path) -> None:
    error = await refusal(build, samples / "1.1.0-broken", version="1.1.0")
    assert error.message == (
        "page 'pages/orders/orders' has no file (looked for pages/orders/orders.*)"
    )


async def test_every_manifest_problem_is_listed(build: Build, samples: Path) -> None:
    error = await refusal(build, samples / "1.1.0-broken", version="1.2.0")
    problems = [
        "app.json version '1.1.0' does not match the release version '1.2.0'",
        "page 'pages/orders/orders' has no file (looked for pages/orders/orders.*)",
    ]
    assert error.message == "; ".join(problems)
    assert list(error.details) == [problems]


async def test_a_missing_source_is_refused(build: Build, tmp_path: Path) -> None:
    error = await refusal(build, tmp_path / "nowhere.zip")
    assert error.message == f"source {tmp_path / 'nowhere.zip'} does not exist"


async def test_sources_outside_the_configured_roots_are_refused(
    build: Build, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = write_tree(tmp_path_factory.mktemp("outside") / "src", TREE)
    inside_link = tmp_path / "link-to-outside"
    inside_link.symlink_to(outside)

    for source in (outside, tmp_path / ".." / outside.parent.name / "src", inside_link):
        error = await refusal(build, source)
        assert error.message.startswith(f"source {source} is outside the directories builds "
                                        f"may read ({tmp_path}, ")
        assert "BUILD_SOURCE_ROOTS" in error.message


async def test_a_source_anywhere_under_a_configured_root_is_read(
    build: Build, tmp_path: Path
) -> None:
    folder = write_tree(tmp_path / "deep" / "er" / "src", TREE)
    assert (await build(tmp_path / "deep" / ".." / "deep" / "er" / "src")).file_count == len(TREE)
    assert (await build(folder)).file_count == len(TREE)


async def test_an_unsupported_source_kind_is_refused(build: Build, tmp_path: Path) -> None:
    source = tmp_path / "package.rar"
    source.write_bytes(b"Rar!")
    error = await refusal(build, source)
    assert "is not a directory, a .zip, a .tar.gz or a .tgz" in error.message


async def test_a_corrupt_zip_is_refused(build: Build, tmp_path: Path) -> None:
    source = tmp_path / "package.zip"
    source.write_bytes(b"PK\x03\x04 definitely not a zip")
    error = await refusal(build, source)
    assert error.message.startswith("package.zip is not a readable zip archive")


async def test_a_corrupt_tarball_is_refused(build: Build, tmp_path: Path) -> None:
    source = tmp_path / "package.tar.gz"
    source.write_bytes(b"\x1f\x8b\x08\x00 broken gzip")
    error = await refusal(build, source)
    assert error.message.startswith("package.tar.gz is not a readable .tar.gz archive")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil.js", "entry '../evil.js' escapes the package root ('..')"),
        ("pages/../../evil.js", "entry 'pages/../../evil.js' escapes the package root ('..')"),
        ("/etc/cron.d/evil", "entry '/etc/cron.d/evil' is an absolute path"),
        ("C:/Windows/evil.dll", "entry 'C:/Windows/evil.dll' is an absolute path"),
        ("pages\\evil.js", "entry 'pages\\\\evil.js' contains a backslash"),
        ("pages/\x1b[2Jevil.js", "entry 'pages/\\x1b[2Jevil.js' contains control characters"),
    ],
)
async def test_zip_paths_escaping_the_root_are_refused(
    build: Build, tmp_path: Path, name: str, problem: str
) -> None:
    source = write_zip(tmp_path / "p.zip", [*TREE.items(), (name, b"x")])
    error = await refusal(build, source)
    assert error.message.startswith(problem)


@pytest.mark.filterwarnings("ignore:Duplicate name")
async def test_all_refused_entries_are_listed(build: Build, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        *TREE.items(),
        ("../a", b""),
        ("/b", b""),
        (link, b"/etc/passwd"),
        ("app.json", b""),
    ]
    error = await refusal(build, write_zip(tmp_path / "p.zip", entries))
    assert error.message == (
        "entry '../a' escapes the package root ('..'); entry '/b' is an absolute path; "
        "entry 'link' is a symbolic link; entry 'app.json' appears more than once"
    )


@pytest.mark.parametrize(
    ("kind", "linkname", "problem"),
    [
        (tarfile.SYMTYPE, "/etc/passwd", "is a symbolic link"),
        (tarfile.LNKTYPE, "app.json", "is a hard link"),
        (tarfile.CHRTYPE, "", "is a device"),
        (tarfile.BLKTYPE, "", "is a device"),
        (tarfile.FIFOTYPE, "", "is a fifo"),
    ],
)
async def test_tar_links_and_special_files_are_refused(
    build: Build, tmp_path: Path, kind: bytes, linkname: str, problem: str
) -> None:
    members = [*regular_members(TREE), (member("pages/x.js", kind, linkname), b"")]
    error = await refusal(build, write_tar_gz(tmp_path / "p.tar.gz", members))
    assert error.message == f"entry 'pages/x.js' {problem}"


async def test_tar_paths_escaping_the_root_are_refused(build: Build, tmp_path: Path) -> None:
    members = [*regular_members(TREE), (member("../x.js"), b"x"), (member("/x.js"), b"x")]
    error = await refusal(build, write_tar_gz(tmp_path / "p.tgz", members))
    assert error.message == (
        "entry '../x.js' escapes the package root ('..'); entry '/x.js' is an absolute path"
    )


async def test_zip_links_devices_and_encrypted_entries_are_refused(
    build: Build, tmp_path: Path
) -> None:
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = list(TREE.items())
    for name, mode in [("link", stat.S_IFLNK | 0o777), ("dev", stat.S_IFCHR | 0o600)]:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        entries.append((info, b"/etc/passwd"))
    source = write_zip(tmp_path / "p.zip", [*entries, ("secret.js", b"ciphertext")])
    # zipfile cannot write encrypted entries: set the flag on the last central header.
    data = bytearray(source.read_bytes())
    header = data.rindex(b"PK\x01\x02")
    struct.pack_into("<H", data, header + 8, 0x1)
    source.write_bytes(bytes(data))

    error = await refusal(build, source)
    assert error.message == (
        "entry 'link' is a symbolic link; entry 'dev' is a device; entry 'secret.js' is encrypted"
    )


async def test_directory_links_and_fifos_are_refused(build: Build, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "src", TREE)
    (folder / "secrets").symlink_to("/etc")
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    os.link(folder / "app.json", folder / "copy.json")
    os.mkfifo(folder / "pipe")

    error = await refusal(build, folder)

    assert sorted(error.message.split("; ")) == [
        "entry 'app.json' is a hard link",
        "entry 'copy.json' is a hard link",
        "entry 'passwd.txt' is a symbolic link",
        "entry 'pipe' is a fifo",
        "entry 'secrets' is a symbolic link",
    ]


async def test_a_zip_bomb_is_refused_before_inflating(build: Build, tmp_path: Path) -> None:
    bomb = write_zip(tmp_path / "bomb.zip", [*TREE.items(), ("data.bin", bytes(40 * MiB))])
    assert bomb.stat().st_size < 100_000

    started = time.monotonic()
    error = await refusal(build, bomb)

    assert error.message == (
        "entry 'data.bin' declares a compression ratio over 100:1 (decompression bomb)"
    )
    assert time.monotonic() - started < 1


async def test_a_zip_understating_its_size_is_refused(build: Build, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "liar.zip", [*TREE.items(), ("data.bin", bytes(2 * MiB))])
    # Rewrite the central directory to claim the entry inflates to 1000 bytes.
    data = bytearray(source.read_bytes())
    header = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, header + 24, 1000)
    source.write_bytes(bytes(data))

    error = await refusal(build, source)

    assert error.message.startswith("liar.zip is not a readable zip archive: Bad CRC-32")


async def test_overlapping_zip_entries_are_refused(build: Build, tmp_path: Path) -> None:
    source = write_zip(tmp_path / "overlap.zip", [("a.bin", bytes(1000)), *TREE.items()])
    # Claim the first entry's compressed data runs over the entries after it.
    data = bytearray(source.read_bytes())
    header = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, header + 20, 50_000)
    source.write_bytes(bytes(data))

    error = await refusal(build, source)

    assert error.message == "entry 'a.bin' overlaps another entry (decompression bomb)"


async def test_too_many_files_are_refused(build: Build, tmp_path: Path) -> None:
    entries = [*TREE.items()] + [(f"assets/{i}.txt", b"") for i in range(20_000)]
    error = await refusal(build, write_zip(tmp_path / "many.zip", entries))
    assert error.message == "the package has more than 20000 files"


async def test_folders_do_not_count_as_files(build: Build, tmp_path: Path) -> None:
    limited = BuildActivities(tmp_path / "artifacts", [tmp_path], limits=SMALL)
    entries = [(f"empty/{i}/", b"") for i in range(20)] + list(TREE.items())
    package = await build(write_zip(tmp_path / "dirs.zip", entries), activities=limited)
    assert package.file_count == len(TREE)


async def test_a_file_over_the_size_limit_is_refused(build: Build, tmp_path: Path) -> None:
    limited = BuildActivities(tmp_path / "artifacts", [tmp_path], limits=SMALL)
    big = os.urandom(MiB + 1)
    sources = [
        write_tree(tmp_path / "src", {**TREE, "big.bin": big}),
        write_zip(tmp_path / "p.zip", [*TREE.items(), ("big.bin", big)]),
        write_tar_gz(tmp_path / "p.tgz", regular_members({**TREE, "big.bin": big})),
    ]
    for source in sources:
        error = await refusal(build, source, activities=limited)
        assert error.message == "entry 'big.bin' is larger than 1 MiB"


async def test_a_package_over_the_total_limit_is_refused(build: Build, tmp_path: Path) -> None:
    limited = BuildActivities(tmp_path / "artifacts", [tmp_path], limits=SMALL)
    parts = {f"part{i}.bin": os.urandom(MiB) for i in range(3)}

    zipped = write_zip(tmp_path / "p.zip", [*TREE.items(), *parts.items()])
    error = await refusal(build, zipped, activities=limited)
    assert error.message == "the archive declares more than 2 MiB"

    # A tarball declares nothing up front: reading stops when the bytes read pass the limit.
    tarball = write_tar_gz(tmp_path / "p.tgz", regular_members({**TREE, **parts}))
    error = await refusal(build, tarball, activities=limited)
    assert error.message == "the package holds more than 2 MiB"


async def test_a_tarball_inflating_past_the_limits_is_stopped(build: Build, tmp_path: Path) -> None:
    limited = BuildActivities(tmp_path / "artifacts", [tmp_path], limits=SMALL)
    # The oversized member is refused, but its zeros still stream through the decompressor.
    members = [*regular_members(TREE), (member("zeros.bin"), bytes(8 * MiB))]
    bomb = write_tar_gz(tmp_path / "bomb.tgz", members)
    assert bomb.stat().st_size < 100_000

    error = await refusal(build, bomb, activities=limited)

    assert error.message == (
        "entry 'zeros.bin' is larger than 1 MiB; bomb.tgz decompresses to more than 2.0 MiB"
    )


# --- Heartbeats, cancellation, logging -------------------------------------------------------


async def test_the_build_heartbeats_its_progress(
    build: Build, samples: Path, activity_env: RecordingEnvironment
) -> None:
    await build(samples / "1.0.0", env=activity_env)
    assert activity_env.heartbeats[0] == {"stage": "starting", "files": 0, "bytes": 0}


async def test_a_long_build_keeps_heartbeating(
    build: Build,
    samples: Path,
    tmp_path: Path,
    activity_env: RecordingEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_read(source: Path, limits: Limits, progress: Progress) -> dict[str, bytes]:
        files = read_source(source, limits, progress)
        time.sleep(0.5)
        return files

    monkeypatch.setattr(build_module, "read_source", slow_read)
    fast = BuildActivities(tmp_path / "artifacts", [samples], heartbeat_every_seconds=0.05)

    await build(samples / "1.0.0", activities=fast, env=activity_env)

    reading = [h for h in activity_env.heartbeats if h["stage"] == "reading"]
    assert len(reading) >= 3
    assert reading[-1]["files"] == 15


async def test_cancelling_the_activity_stops_the_worker_thread(
    build: Build,
    samples: Path,
    activity_env: RecordingEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, stopped = threading.Event(), threading.Event()

    def endless_read(source: Path, limits: Limits, progress: Progress) -> dict[str, bytes]:
        started.set()
        try:
            while True:
                progress.check()
                time.sleep(0.01)
        except Cancelled:
            stopped.set()
            raise

    monkeypatch.setattr(build_module, "read_source", endless_read)
    running = asyncio.create_task(build(samples / "1.0.0", env=activity_env))
    await asyncio.to_thread(started.wait, 5)

    activity_env.cancel()

    with pytest.raises(asyncio.CancelledError):
        await running
    assert await asyncio.to_thread(stopped.wait, 5)


async def test_the_build_logs_its_outcome_with_the_release_context(
    build: Build, samples: Path
) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        package = await build(samples / "1.0.0")

    started, finished = logs
    context = {"activity": "build_package", "workflow_id": "test", "release_id": "rel-1"}
    assert started.items() >= {**context, "event": "build started"}.items()
    assert (
        finished.items()
        >= {
            **context,
            "event": "build finished",
            "sha256": package.sha256,
            "size_bytes": package.size_bytes,
            "file_count": 15,
        }.items()
    )
    assert isinstance(finished["duration_ms"], int)


async def test_a_refused_package_is_logged_with_its_problems(build: Build, samples: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        await refusal(build, samples / "1.1.0-broken", version="1.1.0")
    assert logs[-1]["event"] == "package refused"
    assert logs[-1]["log_level"] == "warning"
    assert logs[-1]["problems"] == [
        "page 'pages/orders/orders' has no file (looked for pages/orders/orders.*)"
    ]
