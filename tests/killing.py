"""Kill -9 a child at chosen moments of its run, then let it finish: the crash tests of the
store and of the pipelined writer share it. The child prints each acknowledged (durable)
height on a line of its own and resumes from its store when started again."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kill_and_resume(command: Sequence[str], delays: Sequence[float],
                    check: Callable[[int], None]) -> int:
    """Start `command` once per delay and kill -9 it that many seconds after its first
    line (the first acknowledgement: the kill lands in the run, however long the
    interpreter takes to start on a loaded machine); then start it once more and let it
    finish. After every exit, `check(acknowledged height)`. Returns the number of kills
    (a run can end before its delay is up)."""
    kills = 0
    for attempt in range(len(delays) + 1):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=REPO)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if attempt < len(delays):
            time.sleep(delays[attempt])
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        lines = (first + out).decode().split()
        check(int(lines[-1]) if lines else 0)
    assert proc.returncode == 0, "the last run, not killed, did not finish"
    return kills
