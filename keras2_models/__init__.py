"""The zoo's models in Keras 2 (`tf_keras`), written as Keras 2 code was: `tf.keras.Sequential`
of `tf.keras.layers`, `compile`, `fit` with callbacks, `save_weights` to HDF5
(`keras2_models.layers`, `.model`, `.train`, `.io`, `.optimizers`, `.checkpoint`).

Keras 2 and Keras 3 cannot share a process. TensorFlow 2.16 and later resolve `tf.keras` to
Keras 3 (and import it along with TensorFlow) unless the environment variable
TF_USE_LEGACY_KERAS is "1" when TensorFlow is imported; then `tf.keras` is `tf_keras` (Keras 2)
for the whole process. The zoo runs every
framework in a process of its own whose environment comes from the registry
(`zoo.frameworks`: this column's entry sets TF_USE_LEGACY_KERAS=1), so importing the zoo's
other packages never sets it in a user's process. This package refuses to be imported in a
process that does not have it, that imported TensorFlow before it was set, or that already
holds Keras 3, with one message naming the fix (`check_process`): a model silently built with
the other Keras would train other numbers.

Importing this package imports nothing but the standard library and `zoo.errors`; its
submodules import tensorflow (and with it tf_keras) when they are imported.
"""

from __future__ import annotations

import os
import sys

from zoo.errors import ConfigError

__all__ = ["LEGACY_ENV", "check_process"]

#: the environment variable (and its value) that makes `tf.keras` Keras 2 in a process
LEGACY_ENV = ("TF_USE_LEGACY_KERAS", "1")
#: the values TensorFlow itself takes for it (`tensorflow/__init__.py`, `lazy_loader.py`)
_ACCEPTED = ("1", "true", "True")


def check_process(environ=None, modules=None) -> None:
    """Refuse a process that cannot run Keras 2: TF_USE_LEGACY_KERAS is not set (to "1", or
    TensorFlow's other spellings "true" and "True"), TensorFlow was imported before it was
    set (TensorFlow reads it at its own import), or Keras 3 (the `keras` package) is already
    imported. `environ` and `modules` default to the process's own (`os.environ`,
    `sys.modules`)."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    name, value = LEGACY_ENV
    if environ.get(name) not in _ACCEPTED:
        raise ConfigError(
            f"keras2_models runs Keras 2 (tf_keras) and needs {name}={value} in the environment "
            f"before TensorFlow is imported (it is {environ.get(name)!r} here); run it through "
            "the zoo, which starts its process with that environment (`zoo compare MODEL "
            "--frameworks keras2,...`), or start Python as `TF_USE_LEGACY_KERAS=1 python ...`.")
    tf = modules.get("tensorflow")   # TensorFlow 2.16+ imports Keras 3 itself without it
    if tf is not None and getattr(tf, "_tf_uses_legacy_keras", True) is False:
        raise ConfigError(
            f"TensorFlow was imported in this process before {name}={value} was set, so its "
            "`tf.keras` is not Keras 2 throughout; set the variable before Python starts "
            "(`TF_USE_LEGACY_KERAS=1 python ...`) or run keras2_models through the zoo "
            "(`zoo compare MODEL --frameworks keras2,...`).")
    if "keras" in modules:
        raise ConfigError(
            "mixing both Keras versions in one process: Keras 3 (the `keras` package) is "
            "already imported here, and keras2_models runs Keras 2 (tf_keras), whose layers, "
            "optimizers and files are other classes; import keras2_models in a process of its "
            "own with TF_USE_LEGACY_KERAS=1 (the zoo's keras2 worker process), and Keras 3 in "
            "another.")


check_process()
