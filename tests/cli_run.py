"""Running `python -m zoo` in a subprocess for the CLI-contract tests, and reading its stderr.

TensorFlow 2.21's native (absl) logging writes a few lines to stderr when it is imported
("WARNING: All log messages before absl::InitializeLog() ...", "I0000 ... port.cc ...") and no
environment variable silences them in this build (TF_CPP_MIN_LOG_LEVEL=3 does not). They are not
the zoo's: `zoo_lines` drops them, and the contract "one line on stderr" is checked on the rest.
Subprocesses run with OMP_NUM_THREADS=1: torch's two default threads on two shared cores made
tiny-batch trainings several times slower.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

_TF_NATIVE = re.compile(r"^([IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log "
                        r"messages before absl::InitializeLog\(\) is called)")


def zoo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def zoo_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's native log lines (and their indented continuations)."""
    out, skipping = [], False
    for line in stderr.strip().splitlines():
        if _TF_NATIVE.match(line):
            skipping = True
            continue
        if skipping and line.startswith(("\t", " ")):
            continue
        skipping = False
        out.append(line)
    return out


def one_error_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    """Assert the CLI's error contract (exit code, one line of its own, no traceback) and
    return that line."""
    lines = zoo_lines(r.stderr)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    return lines[0]
