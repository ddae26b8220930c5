"""The one runner of the zoo's framework processes: `run_process` starts `python -m MODULE
JOB.json` in a framework's environment (`zoo.frameworks`), streams the JSON events it prints,
enforces a deadline and collects its own account of a failure. Used by the comparison's
workers (`zoo.compare`) and the data-parallel jobs (`zoo.distributed`); it imports neither, so
no import cycle forms between them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoo import frameworks as registry
from zoo.frameworks import Framework

__all__ = ["ProcessOutcome", "run_process"]


@dataclass
class ProcessOutcome:
    """How a framework's process ended."""

    returncode: int | None            # None: it outlived its deadline and was killed
    error: str | None                 # its own account: an error event, or its .error file
    stderr: list[str] = field(default_factory=list)


def run_process(framework: str | Framework, module: str, job: dict, job_path: Path,
                on_event: Callable[[dict], str | None] | None = None,
                timeout: float = 3600.0) -> ProcessOutcome:
    """Run `python -m module JOB.json` in the environment of `framework` (its KERAS_BACKEND,
    the repository on PYTHONPATH) and wait at most `timeout` seconds, then kill it. Every
    JSON object the process prints on a line of stdout goes to `on_event` (from a reader
    thread; other output is ignored); a string `on_event` returns is written to the
    process's stdin as one line (the comparison's "go" to a worker waiting its turn). The process tells of its own failure with an
    {"event": "error", "type", "message"[, "traceback"]} line or a `<job>.error` file
    (`zoo.distributed.write_error`). The one runner of the zoo's framework processes."""
    fw = registry.get(framework) if isinstance(framework, str) else framework
    job_path.write_text(json.dumps(job))
    stderr: list[str] = []
    errors: list[str] = []

    def events(stream) -> None:
        for line in stream:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a framework printing to stdout
            if not isinstance(ev, dict):
                continue
            if ev.get("event") == "error":
                errors.append(f"{ev.get('type', 'Error')}: {ev.get('message', '')}" + (
                    f"\n{ev['traceback']}" if ev.get("traceback") else ""))
            if on_event is not None:
                answer = on_event(ev)
                if isinstance(answer, str):
                    try:
                        proc.stdin.write(answer + "\n")
                        proc.stdin.flush()
                    except OSError:   # it ended meanwhile; its exit code tells why
                        pass

    with subprocess.Popen([sys.executable, "-m", module, str(job_path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=fw.environ()) as proc:
        readers = [threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True),
                   threading.Thread(target=events, args=(proc.stdout,), daemon=True)]
        for t in readers:
            t.start()
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        for t in readers:  # the output the process wrote before it ended
            t.join(timeout=5)
    error = errors[-1] if errors else None
    err_file = job_path.with_suffix(".error")
    if error is None and rc not in (0, None) and err_file.is_file():
        error = err_file.read_text().strip()
    return ProcessOutcome(rc, error, stderr)
