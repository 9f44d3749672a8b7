"""Read a mini program package's files from a directory, a .zip or a .tar.gz/.tgz, safely.

The source is untrusted. Nothing is extracted to disk: files are read into memory, which the
limits bound. Sizes an archive declares are used only to refuse it early; the limits are
enforced on the bytes actually read. Paths are normalised ('./' and empty parts dropped) to
POSIX paths relative to the package root.

Refused (each refused entry is reported; the package is rejected if there is any):
- paths that are absolute, contain '..', a backslash or a NUL, or appear twice, and a path
  that is both a file and a folder;
- symbolic links, hard links, devices, fifos, sockets, sparse and encrypted entries;
- zip entries whose declared compressed size overlaps the next entry (the overlapping
  "zip bomb" construction) or whose declared compression ratio is over `max_ratio`.

Fatal (reading stops at once):
- more than `max_files` files (folders do not count), a file over `max_file_bytes`, more than
  `max_total_bytes` in all, an entry inflating past `max_ratio` while being read, a .tar.gz
  whose decompressed stream outgrows the content limit plus room for tar headers;
- a missing source, a source of another kind, a corrupt archive.

Ignored: folder entries (the bundle has no folders; empty folders vanish), and operating
system junk: anything under a `__MACOSX` folder and any file named `.DS_Store`.
"""

import gzip
import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn, Protocol

from activities.progress import Progress

MiB = 1024 * 1024
CHUNK_BYTES = MiB
# Room for the tar headers, padding and long-name records around each allowed file.
TAR_OVERHEAD_PER_FILE = 4096
JUNK_FOLDERS = frozenset({"__MACOSX"})
JUNK_FILES = frozenset({".DS_Store"})
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class Limits:
    max_files: int = 20_000
    max_file_bytes: int = 50 * MiB
    max_total_bytes: int = 200 * MiB
    max_ratio: int = 100
    # Below this size a high compression ratio is harmless (a small file of repeated text).
    ratio_floor_bytes: int = MiB


DEFAULT_LIMITS = Limits()


class PackageSourceError(Exception):
    """The source cannot be used as a package; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_source(source: Path, limits: Limits, progress: Progress) -> dict[str, bytes]:
    """The package's files: POSIX path relative to the package root -> content."""
    files = _Files(limits, progress)
    if source.is_dir():
        _read_directory(source, files)
    elif not source.exists():
        raise PackageSourceError([f"source {source} does not exist"])
    elif source.name.lower().endswith(".zip"):
        _read_zip(source, files)
    elif source.name.lower().endswith((".tar.gz", ".tgz")):
        _read_tar_gz(source, files)
    else:
        raise PackageSourceError(
            [f"source {source} is not a directory, a .zip, a .tar.gz or a .tgz"]
        )
    return files.result()


class _Files:
    """The files read so far, the problems found, and the limits on what is read."""

    def __init__(self, limits: Limits, progress: Progress) -> None:
        self.limits = limits
        self.progress = progress
        self.contents: dict[str, bytes] = {}
        self.problems: list[str] = []
        self.seen: set[str] = set()
        self.file_count = 0
        self.total_bytes = 0

    def admit(self, name: str) -> str | None:
        """The package path for a file entry, or None if it is junk or refused."""
        self.progress.check()
        self.file_count += 1
        if self.file_count > self.limits.max_files:
            self.fatal(f"the package has more than {self.limits.max_files} files")
        path = _normalise(name)
        if _is_junk(path):
            return None
        problem = _path_problem(name)
        if problem is None and path in self.seen:
            problem = "appears more than once"
        self.seen.add(path)
        if problem is not None:
            self.refuse(name, problem)
            return None
        return path

    def refuse(self, name: str, problem: str) -> None:
        self.problems.append(f"entry {name!r} {problem}")

    def fatal(self, problem: str) -> NoReturn:
        raise PackageSourceError([*self.problems, problem])

    def read(self, path: str, stream: _Readable, compressed_bytes: int | None = None) -> None:
        """Read one file, enforcing the limits on the bytes as they arrive."""
        chunks, size = [], 0
        while chunk := stream.read(CHUNK_BYTES):
            self.progress.check()
            size += len(chunk)
            self.total_bytes += len(chunk)
            self._enforce(path, size, compressed_bytes)
            chunks.append(chunk)
        self.contents[path] = b"".join(chunks)
        self.progress.file_done(size)

    def _enforce(self, path: str, size: int, compressed_bytes: int | None) -> None:
        limits = self.limits
        if size > limits.max_file_bytes:
            self.fatal(f"entry {path!r} is larger than {_mib(limits.max_file_bytes)}")
        if self.total_bytes > limits.max_total_bytes:
            self.fatal(f"the package holds more than {_mib(limits.max_total_bytes)}")
        if compressed_bytes is not None and _absurd_ratio(size, compressed_bytes, limits):
            self.fatal(
                f"entry {path!r} inflates more than {limits.max_ratio}:1 (decompression bomb)"
            )

    def result(self) -> dict[str, bytes]:
        self.problems += [
            f"entry {path!r} is both a file and a folder"
            for path in _file_folder_clashes(self.seen)
        ]
        if self.problems:
            raise PackageSourceError(self.problems)
        return self.contents


def _normalise(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _is_junk(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and (parts[-1] in JUNK_FILES or not JUNK_FOLDERS.isdisjoint(parts))


def _path_problem(name: str) -> str | None:
    if name.startswith("/") or WINDOWS_DRIVE.match(name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "escapes the package root ('..')"
    if "\\" in name:
        return "contains a backslash"
    if "\x00" in name:
        return "contains a NUL character"
    if not name.isprintable() or not _is_utf8(name):
        return "contains control characters or bytes that are not UTF-8"
    if not _normalise(name):
        return "has an empty path"
    return None


def _is_utf8(name: str) -> bool:
    # Undecodable file names come back from the OS or tar as lone surrogates.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _file_folder_clashes(paths: set[str]) -> list[str]:
    folders = {str(parent) for path in paths for parent in PurePosixPath(path).parents}
    return sorted(folders & paths)


def _absurd_ratio(size: int, compressed_bytes: int, limits: Limits) -> bool:
    return size > limits.ratio_floor_bytes and size > limits.max_ratio * max(compressed_bytes, 1)


def _mib(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size / MiB:.1f} MiB"


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is, from its stat mode; None for a regular (or untyped) file."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder with contents"
    return None


# --- Directory ------------------------------------------------------------------------------


def _read_directory(root: Path, files: _Files) -> None:
    for entry in _walk(root):
        path = files.admit(Path(entry.path).relative_to(root).as_posix())
        if path is None:
            continue
        problem = _directory_entry_problem(entry, files.limits)
        if problem is not None:
            files.refuse(path, problem)
            continue
        # The entry may have been swapped since it was inspected: never follow a link, never
        # block on a fifo.
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as stream:
            files.read(path, stream)


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every non-folder entry under `root`, lazily, without following symbolic links."""
    folders = [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                else:
                    yield entry


def _directory_entry_problem(entry: os.DirEntry[str], limits: Limits) -> str | None:
    info = entry.stat(follow_symlinks=False)
    kind = _special_kind(info.st_mode)
    if kind is not None:
        return f"is {kind}"
    if info.st_nlink > 1:
        return "is a hard link"
    if info.st_size > limits.max_file_bytes:
        return f"is larger than {_mib(limits.max_file_bytes)}"
    return None


# --- Zip -------------------------------------------------------------------------------------


def _read_zip(source: Path, files: _Files) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            admitted = _admit_zip_entries(archive, source.stat().st_size, files)
            for path, info in admitted:
                with archive.open(info) as stream:
                    files.read(path, stream, compressed_bytes=info.compress_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as error:
        files.fatal(f"{source.name} is not a readable zip archive: {error}")


def _admit_zip_entries(
    archive: zipfile.ZipFile, archive_bytes: int, files: _Files
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Check every entry's header before inflating anything; refuse the lot on any problem."""
    spans = _zip_spans(archive.infolist(), archive_bytes)
    entries = [info for info in archive.infolist() if not info.is_dir()]
    admitted = []
    for info in entries:
        path = files.admit(info.filename)
        if path is None:
            continue
        problem = _zip_entry_problem(info, spans[id(info)], files.limits)
        if problem is not None:
            files.refuse(info.filename, problem)
            continue
        admitted.append((path, info))
    declared = sum(info.file_size for _, info in admitted)
    if declared > files.limits.max_total_bytes:
        files.fatal(f"the archive declares more than {_mib(files.limits.max_total_bytes)}")
    if files.problems:
        raise PackageSourceError(files.problems)
    return admitted


def _zip_spans(entries: list[zipfile.ZipInfo], archive_bytes: int) -> dict[int, int]:
    """Bytes between each entry's local header and the next one: the most it can occupy."""
    ordered = sorted(entries, key=lambda info: info.header_offset)
    ends = [info.header_offset for info in ordered[1:]] + [archive_bytes]
    return {id(info): end - info.header_offset for info, end in zip(ordered, ends, strict=True)}


def _zip_entry_problem(info: zipfile.ZipInfo, span: int, limits: Limits) -> str | None:
    kind = _special_kind(info.external_attr >> 16)
    if kind is not None:
        return f"is {kind}"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_size > span:
        return "overlaps another entry (decompression bomb)"
    if info.file_size > limits.max_file_bytes:
        return f"is larger than {_mib(limits.max_file_bytes)}"
    if _absurd_ratio(info.file_size, info.compress_size, limits):
        return f"declares a compression ratio over {limits.max_ratio}:1 (decompression bomb)"
    return None


# --- Tar ---------------------------------------------------------------------------------


class _StreamTooLong(Exception):
    pass


class _CappedReader(io.BufferedIOBase):
    """A read-only stream that refuses to yield more than `cap` bytes."""

    def __init__(self, stream: _Readable, cap: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = cap

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self._left -= len(data)
        if self._left < 0:
            raise _StreamTooLong()
        return data


def _read_tar_gz(source: Path, files: _Files) -> None:
    limits = files.limits
    cap = limits.max_total_bytes + limits.max_files * TAR_OVERHEAD_PER_FILE
    try:
        with (
            gzip.open(source, "rb") as unzipped,
            tarfile.open(fileobj=_CappedReader(unzipped, cap), mode="r|") as archive,
        ):
            for member in archive:
                _read_tar_member(archive, member, files)
    except _StreamTooLong:
        files.fatal(f"{source.name} decompresses to more than {_mib(cap)}")
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, ValueError) as error:
        files.fatal(f"{source.name} is not a readable .tar.gz archive: {error}")


def _read_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, files: _Files) -> None:
    if member.isdir():
        return
    path = files.admit(member.name)
    if path is None:
        return
    problem = _tar_member_problem(member, files.limits)
    if problem is not None:
        files.refuse(member.name, problem)
        return
    stream = archive.extractfile(member)
    assert stream is not None, "tarfile gives a stream for every regular file"
    with stream:
        files.read(path, stream)


def _tar_member_problem(member: tarfile.TarInfo, limits: Limits) -> str | None:
    if member.issym():
        return "is a symbolic link"
    if member.islnk():
        return "is a hard link"
    if member.ischr() or member.isblk():
        return "is a device"
    if member.isfifo():
        return "is a fifo"
    if member.issparse():
        return "is a sparse file"
    if not member.isreg():
        return "is not a regular file"
    if member.size > limits.max_file_bytes:
        return f"is larger than {_mib(limits.max_file_bytes)}"
    return None
