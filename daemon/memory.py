"""Big buffers go back to the operating system when they are freed (glibc).

A backlog passes mail of 10-25 MB through the process: raw bytes from IMAP, the copies the
parser and the database driver make. glibc serves an allocation over its mmap threshold
with a mapping of its own, unmapped when freed; but the threshold moves up to the size of
the largest block freed so far (up to 32 MiB), after which such buffers come from the heap,
where what is freed stays part of the process. Measured: ``poll --once`` over 2,000 mails
with five 10-25 MB attachments peaked at 220 MiB, and at 178 MiB with the threshold held at
1 MiB. :func:`release_big_buffers` holds it there (``mallopt(M_MMAP_THRESHOLD)``, which
also stops it from moving); elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter number
BIG_BUFFER = 1024 * 1024


def release_big_buffers(threshold: int = BIG_BUFFER) -> bool:
    """Serve allocations of ``threshold`` bytes and more with their own mappings, returned
    to the system when freed. True when the C library took the setting."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
