"""docs/own-models.md ("Checking your own port") as it is written: every Python block runs, in
order, in one namespace, and every line of every `text` block after it is printed by the
blocks before it. The guide's models are small and its data the bundled digits."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import keras

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "own-models.md"


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w+)\n(.*?)^```$", text, flags=re.S | re.M)]


def test_the_guide_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.clear_session()   # layer names as in a fresh process: batch_normalization, ...
    ns: dict = {"__name__": "guide"}
    printed = io.StringIO()
    found = blocks(GUIDE.read_text())
    kinds = [k for k, _ in found]
    assert kinds.count("python") >= 8 and kinds.count("text") >= 2, kinds
    for kind, code in found:
        if kind == "python":
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(GUIDE), "exec"), ns)
        elif kind == "text":
            for line in code.strip().splitlines():
                assert line in printed.getvalue(), f"the guide shows {line!r}, not printed"
    assert ns["fixed"].agrees() and ns["tf1_comp"].agrees()
    assert len(ns["comp"].differences) == 2
