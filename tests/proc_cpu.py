"""CPU seconds of processes, read from /proc (the Ctrl-C and Studio-cancel tests check that a
cancelled local model stops using the cores)."""

from __future__ import annotations

import os

PPID, PGRP = 1, 2  # indexes of stat's fields 4 (ppid) and 5 (pgrp) after the command name


def cpu_s_where(field: int, value: int) -> float:
    """CPU seconds (user + system) used so far by the processes whose stat `field` (`PPID` or
    `PGRP`) equals `value`."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[field]) == value:
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total
