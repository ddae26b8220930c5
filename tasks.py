#!/usr/bin/env python3
"""Set up (or reuse) the project's virtual environment, then run a task in it.

    python3 tasks.py demo            # the main job: zoo's cross-framework comparison
    python3 tasks.py test            # the whole test suite (two processes: -n 2 --dist loadfile)
    python3 tasks.py zoo ARGS...     # any zoo command
    python3 tasks.py bench ARGS...   # benchmarks (slow); bench --compare: zoo compare's ratios;
                                     # bench --profile: where zoo compare's time goes

Needs only Python >= 3.10 and access to the package index. The environment lives in .venv
(override with ZOO_VENV) and is reinstalled when pyproject.toml or constraints/ci.txt change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ZOO_VENV", ROOT / ".venv"))
STAMP = VENV / ".zoo-installed"
INPUTS = [ROOT / "pyproject.toml", ROOT / "constraints" / "ci.txt"]

# The main job (`zoo compare softmax --dataset iris`): softmax regression on iris in Keras, TF1
# and PyTorch (and the float64 numpy reference), compared step by step; the report and plots
# go to runs/demo/.
DEMO = ["compare", "softmax", "--dataset", "iris", "--frameworks", "keras,tf1,torch,numpy",
        "--out", "runs/demo", "--force"]


#: `tasks.py test` runs the suite on two processes (pytest-xdist; CI has two cores), each test
#: file whole in one of them (`--dist loadfile`): a file's module fixtures (test_bad_input's CLI
#: matrix, test_porting's background processes) then run once, and its tests keep their order.
#: Not added when the arguments choose for themselves: -n N (-n 0: one process), --dist, --tx,
#: -p no:xdist, or --pdb / --trace (which xdist refuses). A plain `python -m pytest` runs in
#: one process unless given -n.
PARALLEL = ["-n", "2", "--dist", "loadfile"]


def pytest_args(rest: list[str]) -> list[str]:
    """The pytest arguments of `tasks.py test REST...`: PARALLEL, then REST."""
    args = [*rest, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    own = any(a in ("-n", "--numprocesses", "--dist", "--tx", "--pdb", "--trace")
              or a.startswith(("-n", "--numprocesses=", "--dist=", "--tx="))
              or a.endswith("no:xdist") for a in args)
    return list(rest) if own else [*PARALLEL, *rest]


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _digest() -> str:
    h = hashlib.sha256()
    for p in INPUTS:
        h.update(p.read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    if STAMP.is_file() and STAMP.read_text().strip() == _digest() and _bin("python").exists():
        return
    if not _bin("python").exists():
        print(f"[tasks] creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[tasks] installing the project and its pinned dependencies (first run: a few minutes)",
          flush=True)
    pip = [str(_bin("python")), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off"]
    subprocess.run([*pip, "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(ROOT / "constraints" / "ci.txt"), "-e", f"{ROOT}[test]"],
                   check=True)
    STAMP.write_text(_digest())


def run(cmd: list[str]) -> int:
    return subprocess.call(cmd, cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    task, rest = argv[0], argv[1:]
    if task not in ("demo", "test", "zoo", "bench", "setup"):
        print(f"tasks.py: unknown task {task!r}; use demo, test, zoo, bench or setup", file=sys.stderr)
        return 2
    try:
        ensure_venv()
    except subprocess.CalledProcessError as exc:
        print(f"tasks.py: installing the environment failed ({exc}); see the pip output above",
              file=sys.stderr)
        return 1
    py = str(_bin("python"))
    if task == "setup":
        return 0
    if task == "test":
        return run([py, "-m", "pytest", *pytest_args(rest)])
    if task == "zoo":
        return run([py, "-m", "zoo", *rest])
    if task == "bench":
        if rest[:1] == ["--compare"]:  # zoo compare against the fastest paths
            return run([py, str(ROOT / "scripts" / "bench_compare.py"), *rest[1:]])
        if rest[:1] == ["--profile"]:  # where zoo compare's time goes
            return run([py, str(ROOT / "scripts" / "profile_compare.py"), *rest[1:]])
        return run([py, str(ROOT / "scripts" / "bench.py"), *rest])
    return run([py, "-m", "zoo", *DEMO, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
