"""Content-addressed attachment store: bytes live at ``<dir>/ab/cd/<sha256>``.

The same file mailed twice is stored once. Files are written to a temporary name and renamed,
so a crash never leaves a half-written blob under its final name; a blob whose database
transaction later rolls back is merely unreferenced, never wrong.

A large attachment never needs to be in memory whole: :meth:`BlobStore.writer` takes its bytes
in chunks (as intake decodes them from the raw mail), hashes them on the way to a temporary
file, and files it under its sha256 when closed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Written:
    """What a :class:`BlobWriter` received: its sha256, its size, and whether it was kept."""

    sha256: str
    size: int
    kept: bool


class BlobWriter:
    """One blob written in chunks. ``limit``: past this many bytes the file is dropped (the
    bytes are still counted and hashed, so the caller can record what it did not keep)."""

    def __init__(self, root: Path, limit: int | None) -> None:
        self._root = root
        self._limit = limit
        self._hash = hashlib.sha256()
        self._size = 0
        self._tmp: Path | None = None
        self._file: IO[bytes] | None = None
        self._dropped = False

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            self._drop()
            return
        if self._dropped:
            return
        if self._file is None:
            self._root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._root, prefix=".tmp-")
            self._tmp, self._file = Path(name), os.fdopen(fd, "wb")
        if self._file is not None:
            self._file.write(chunk)

    def close(self) -> Written:
        """File the blob under its sha256 (unless it went past the limit)."""
        digest = self._hash.hexdigest()
        if self._limit is not None and self._size > self._limit:
            return Written(digest, self._size, kept=False)
        if self._file is None:  # nothing was written: an empty file
            self.write(b"")
        assert self._file is not None and self._tmp is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            target = BlobStore(self._root).path_of(digest)
            if target.exists():
                self._tmp.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._tmp, target)
        except BaseException:
            self._drop()
            raise
        self._file = None
        return Written(digest, self._size, kept=True)

    def abort(self) -> None:
        """Forget what was written (an error while reading the part)."""
        self._drop()

    def _drop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._dropped = True




class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, payload: bytes, sha256: str | None = None) -> str:
        digest = sha256 or hashlib.sha256(payload).hexdigest()
        target = self.path_of(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def writer(self, limit: int | None = None) -> BlobWriter:
        """A blob written in chunks (see :class:`BlobWriter`)."""
        return BlobWriter(self.root, limit)

    def get(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and self.path_of(sha256).exists()
