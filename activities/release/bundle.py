"""The bundle: a deterministic zip of the package's files, stored content-addressed.

The bytes depend only on the files' paths and contents (and on zlib's deflate output, which
is stable for a given zlib version and level): entries sorted by path, one fixed timestamp,
fixed attributes, a fixed creator system, a fixed compression level, no folder entries, no
extra fields, no comment. So a rebuild of the same package lands on the same artifact.
"""

import hashlib
import io
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from activities.progress import Progress
from mpr.domain.release.manifest import MANIFEST_PATH

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_ATTRIBUTES = (stat.S_IFREG | 0o644) << 16
UNIX = 3
COMPRESS_LEVEL = 9


@dataclass(frozen=True)
class StoredBundle:
    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class BundleContents:
    size_bytes: int
    uncompressed_bytes: int
    paths: list[str]
    manifest: bytes


class BundleUnreadable(Exception):
    """A stored bundle is missing, truncated or not a bundle."""


def bundle_bytes(files: Mapping[str, bytes], progress: Progress) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files):
            progress.check()
            archive.writestr(
                _entry(path), files[path], zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
            )
    return buffer.getvalue()


def _entry(path: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
    # ZipInfo defaults the creator system to the host's: pin it so Windows builds match.
    entry.create_system = UNIX
    entry.external_attr = FILE_ATTRIBUTES
    return entry


def store_bundle(data: bytes, artifact_dir: Path) -> StoredBundle:
    """Store at {artifact_dir}/{sha[:2]}/{sha}.zip; an existing copy is kept as it is."""
    sha256 = hashlib.sha256(data).hexdigest()
    target = artifact_dir.resolve() / sha256[:2] / f"{sha256}.zip"
    if not target.exists():
        _write_atomically(target, data)
    return StoredBundle(path=target, sha256=sha256, size_bytes=len(data))


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        # Atomic: readers see no file or the whole file; a concurrent identical build
        # replacing it writes the same bytes.
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def read_bundle(path: Path) -> BundleContents:
    """What a stored bundle holds, read from the file itself."""
    try:
        size_bytes = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            manifest = archive.read(MANIFEST_PATH)
    except FileNotFoundError:
        raise BundleUnreadable(f"artifact {path} does not exist") from None
    except KeyError:
        raise BundleUnreadable(f"artifact {path} has no {MANIFEST_PATH}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, IsADirectoryError) as error:
        raise BundleUnreadable(f"artifact {path} is not a readable zip: {error}") from None
    return BundleContents(
        size_bytes=size_bytes,
        uncompressed_bytes=sum(entry.file_size for entry in entries),
        paths=[entry.filename for entry in entries],
        manifest=manifest,
    )
