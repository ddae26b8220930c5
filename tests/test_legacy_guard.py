"""Keras 3 and Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1) never share a process: the zoo's
Keras 3 package refuses to import where Keras 2 is switched on, with one clear message, and
importing the zoo never switches it on."""

from __future__ import annotations

import os
import subprocess
import sys


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full.update(env, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=120)


def test_keras3_code_refuses_a_keras2_process():
    r = _python("import keras_models", TF_USE_LEGACY_KERAS="1")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "zoo.errors.ConfigError: keras_models is the zoo's Keras 3 code, but this process runs "
        "Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1): mixing both Keras versions in one process "
        "is refused. Run them in separate processes (zoo compare does: each framework has its "
        "own), or unset TF_USE_LEGACY_KERAS before Python starts.")


def test_importing_the_zoo_never_switches_keras2_on():
    r = _python("import os, zoo, zoo.own, zoo.compare, zoo.frameworks, keras_models, "
                "tf1_compat, torch_models\nprint(os.environ.get('TF_USE_LEGACY_KERAS'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "None"


def test_the_cli_runs_keras2_in_a_process_of_its_own(tmp_path):
    """`zoo train --framework keras2` from a normal shell: the CLI starts itself again with
    TF_USE_LEGACY_KERAS=1 (this process never imports TensorFlow first); a Keras 2 .h5 and a
    Keras 3 .keras never meet in one process: convert through the canonical .npz."""
    from tests.cli_run import one_error_line, zoo

    w = tmp_path / "w.h5"
    r = zoo("train", "softmax", "--framework", "keras2", "--dataset", "iris", "--epochs", "2",
            "--save", w)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("keras2 softmax on iris: 8 steps")
    line = one_error_line(zoo("convert", w, tmp_path / "w.keras"))
    assert line == ("zoo convert: error: a Keras 2 HDF5 file (Keras 2) and a Keras 3 file "
                    "cannot be converted in one process (the two Keras versions never share "
                    "one): convert through the canonical .npz, e.g. `zoo convert w.h5 w.npz` "
                    "then `zoo convert w.npz w.keras`.")
    assert zoo("convert", w, tmp_path / "w.npz").returncode == 0
    r = zoo("convert", tmp_path / "w.npz", tmp_path / "w.keras")
    assert r.returncode == 0, r.stderr


def test_zoo_train_runs_tf1_layers_and_saves_canonical_weights(tmp_path):
    """tf1-layers has no file format of its own (its Saver checkpoints would be tf1's .ckpt):
    `zoo train` saves its weights as the canonical .npz, and refuses a model TF1 layers
    cannot express in one line."""
    from tests.cli_run import one_error_line, zoo

    r = zoo("train", "mlp", "--framework", "tf1-layers", "--dataset", "digits", "--epochs", "1",
            "--save", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("tf1-layers mlp on digits: 45 steps")
    assert (tmp_path / "w.npz").is_file()
    line = one_error_line(zoo("train", "gru", "--framework", "tf1-layers", "--dataset", "digits",
                              "--epochs", "1"))
    assert line.startswith("zoo train: error: gru_0: TF1's rnn_cell.GRUCell is the "
                           "reset_after=False GRU")
