"""``python -m tests.hostile.peak ARGS``: run ``ticketd ARGS`` and, at exit, write the
process's peak resident set (VmHWM) and CPU seconds as JSON to ``$TICKETD_PEAK_FILE``.

VmHWM is read by the process itself: it belongs to the address space created by ``exec``, so
it is this run's alone. (``ru_maxrss`` from ``wait4`` would not do: Linux carries the forking
parent's resident set over into the child's.)
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
from pathlib import Path


def _write_peak() -> None:
    target = os.environ.get("TICKETD_PEAK_FILE")
    if not target:
        return
    status = Path("/proc/self/status").read_text(encoding="ascii")
    hwm = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmHWM:"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(target).write_text(json.dumps({"peak_rss": hwm * 1024,
                                        "cpu": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    atexit.register(_write_peak)
    runpy.run_module("daemon", run_name="__main__", alter_sys=True)
