"""Running `python -m zoo` in a subprocess for the CLI-contract tests, and reading its stderr.

The CLI itself drops TensorFlow's native log lines from stderr (`zoo.cli.native_log_filter`),
so the contract "one line on stderr" is checked on stderr as it is.
Subprocesses run with OMP_NUM_THREADS=1: torch's two default threads on two shared cores made
tiny-batch trainings several times slower.
"""

from __future__ import annotations

import os
import subprocess
import sys


def zoo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def zoo_lines(stderr: str) -> list[str]:
    """The lines of stderr (nothing filtered: a stray line fails the one-line contract)."""
    return stderr.strip().splitlines()


def one_error_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    """Assert the CLI's error contract (exit code, one line on stderr, no traceback) and
    return that line."""
    lines = zoo_lines(r.stderr)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    return lines[0]
