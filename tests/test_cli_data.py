"""`zoo data` and the CLI's error contract: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zoo.cli import main


def zoo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          timeout=120)


def test_data_iris_json(capsys):
    assert main(["data", "iris", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["train_samples"], s["test_samples"], s["features"], s["classes"]) == (120, 30, 4, 3)
    assert s["train_class_counts"] == [40, 40, 40]


def test_data_mnist10k_table(shared_mnist):
    r = zoo("data", "mnist10k", "--data-dir", str(shared_mnist))
    assert r.returncode == 0, r.stderr
    assert "8,000 train / 2,000 test" in r.stdout and "784 (28x28x1 images)" in r.stdout
    assert "classes" in r.stdout and " 10 " in r.stdout


def test_data_icecream_range(capsys):
    assert main(["data", "icecream", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["task"] == "regression" and s["target_range"][0] < s["target_range"][1]


@pytest.mark.parametrize("args,message", [
    (["data", "irsi"], "zoo data: error: unknown dataset 'irsi'. Did you mean 'iris'?"),
    (["data", "mnist10k", "--data-dir", "/nonexistent/dir"], "zoo data: error: data directory /nonexistent/dir does not exist"),
    (["data", "--csv", "/nonexistent.csv", "--target", "y"], "zoo data: error: /nonexistent.csv: no such file"),
    (["data", "iris", "--dtype", "float16"], "zoo data: error: argument --dtype: invalid choice: 'float16'"),
    (["nosuchcommand"], "zoo: error: argument COMMAND: invalid choice: 'nosuchcommand'"),
], ids=["unknown-name", "missing-dir", "missing-csv", "bad-flag", "bad-command"])
def test_errors_are_one_line_exit_2(args, message):
    r = zoo(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback():
    r = zoo("--debug", "data", "irsi")
    assert r.returncode != 0 and "Traceback" in r.stderr and "UnknownNameError" in r.stderr


def test_help_lists_commands():
    r = zoo("--help")
    assert r.returncode == 0 and "data" in r.stdout
