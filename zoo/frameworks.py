"""The one list of frameworks the zoo runs, and the protocol each implements.

Every other place that needs to know which frameworks exist, which package implements one,
which environment its processes need, which weight format it writes, whether it trains
data-parallel or whether `zoo train` takes it, asks this registry: the comparison harness and
its worker processes (`zoo.compare`, `zoo.worker`), weight interchange (`zoo.interchange`),
data-parallel training (`zoo.distributed`) and the commands (`zoo.commands.*`).

The protocol (docs/layers.md; the same names in every framework package and the numpy
reference): `<package>/model.py` build / get_weights / set_weights / make_loss / outputs,
`<package>/train.py` train / predict / evaluate / step_details, `<package>/io.py` save / load.
The float64 numpy reference implements model and train in the one module `zoo.reference`.

Importing this module imports no framework: a `Framework` names its modules, and its
accessors (`fw.train`, `fw.predict`, `fw.module("io")`, ...) import that framework's module
only when called.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from zoo.errors import ConfigError, unknown_name

__all__ = ["CANONICAL_FORMAT", "DEFAULT_COMPARE", "FRAMEWORKS", "NAMES", "PROTOCOL", "Framework",
           "for_format", "get", "import_in_order", "names", "of_module"]

#: protocol function -> the module role that holds it (`<package>/<role>.py`)
PROTOCOL: dict[str, str] = {
    "build": "model", "get_weights": "model", "set_weights": "model", "make_loss": "model",
    "outputs": "model",
    "train": "train", "predict": "train", "evaluate": "train", "step_details": "train",
    "save": "io", "load": "io",
}
#: The zoo's own weight format, framework-free: canonical names as keys, canonical layout, in
#: an `.npz` (written and read by `zoo.interchange` itself); the numpy reference computes with it.
CANONICAL_FORMAT = "npz"
_ROOT = str(Path(__file__).resolve().parent.parent)


class _Protocol:
    """`fw.<name>`: the protocol function `name` of that framework, imported on first use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, fw: Framework | None, owner: type | None = None) -> Any:
        if fw is None:
            return self
        return fw.function(self.name)


@dataclass(frozen=True)
class Framework:
    """One framework the zoo runs: where its code is and how to run it."""

    name: str
    #: the package implementing the protocol (or, with `single_module`, the one module)
    package: str
    description: str
    #: top-level deep-learning modules its code imports (in the order to import them)
    imports: tuple[str, ...]
    #: environment of its processes; KERAS_BACKEND must be set before keras is first imported
    env: tuple[tuple[str, str], ...] = (("KERAS_BACKEND", "tensorflow"),)
    #: the suffix of its native weight files (None: it has no file format of its own)
    suffix: str | None = None
    #: what such a file is, for messages
    weight_file: str | None = None
    #: its weight format's name in `zoo.interchange` and its column in the weight tables of
    #: `zoo.layers` (native tensor names and layouts); None: the canonical layout itself
    weight_format: str | None = None
    #: it trains data-parallel on N workers (`<package>/distributed.py`, docs/distributed.md)
    data_parallel: bool = False
    #: `zoo train --framework NAME` takes it (it trains in the command's own process)
    cli_train: bool = False
    #: in `zoo compare`'s default --frameworks
    compared_by_default: bool = False
    #: it computes in this dtype whatever the training dtype (the float64 reference)
    fixed_dtype: str | None = None
    #: the protocol lives in the one module `package` (the numpy reference), not in
    #: `<package>/<role>.py`
    single_module: bool = False
    #: `zoo.compare_models` reads and trains users' own models of it (`<package>/own.py`)
    own_models: bool = False
    #: the layout its image tensors take: "nhwc" (the canonical one) or "nchw"
    image_layout: str = "nhwc"
    #: zoo models its API cannot express (`zoo list`, refused in one line when asked for)
    models_refused: tuple[str, ...] = ()
    #: frameworks with the same value here (and the same `env`) may train in one `zoo compare`
    #: worker process, one after the other: Keras 3 and TF1 both run on one TensorFlow
    #: import (about 2.4 s of a small comparison); None: a process of its own
    shares_process: str | None = None

    # the protocol, imported on first use (see PROTOCOL)
    build = _Protocol()
    get_weights = _Protocol()
    set_weights = _Protocol()
    make_loss = _Protocol()
    outputs = _Protocol()
    train = _Protocol()
    predict = _Protocol()
    evaluate = _Protocol()
    step_details = _Protocol()
    save = _Protocol()
    load = _Protocol()

    @property
    def legacy_keras(self) -> bool:
        """Its processes run Keras 2 (TF_USE_LEGACY_KERAS=1): never beside Keras 3."""
        return ("TF_USE_LEGACY_KERAS", "1") in self.env

    @property
    def runs_on_torch(self) -> bool:
        """Its code runs torch (torch's thread count matters in its processes)."""
        return "torch" in self.imports

    def module_name(self, role: str) -> str:
        """The module of `role` ("model", "train", "io", "layers", "checkpoint",
        "distributed")."""
        if self.single_module:
            if role not in ("model", "train"):
                raise ConfigError(f"{self.name} ({self.package}) has no {role} module: it "
                                  "computes with canonical weights in memory only.")
            return self.package
        if role == "distributed" and not self.data_parallel:
            raise ConfigError(f"data-parallel training exists for "
                              f"{' and '.join(names(data_parallel=True))}, not {self.name}.")
        return f"{self.package}.{role}"

    def module(self, role: str) -> ModuleType:
        """Import and return the module of `role` (this framework's only)."""
        return importlib.import_module(self.module_name(role))

    def function(self, name: str) -> Callable[..., Any]:
        """The protocol function `name` (see PROTOCOL), imported now."""
        if name not in PROTOCOL:
            raise unknown_name("protocol function", name, list(PROTOCOL))
        mod = self.module(PROTOCOL[name])
        try:
            return getattr(mod, name)
        except AttributeError:
            raise ConfigError(f"{self.name}: {mod.__name__} has no {name}(); every framework "
                              "implements the protocol of docs/layers.md.") from None

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a process of this framework: `base` (default os.environ) with
        this framework's variables, TensorFlow's C++ logs quiet, and the repository on
        PYTHONPATH (so `python -m zoo.worker` finds the packages from any directory)."""
        env = dict(os.environ if base is None else base)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.update(dict(self.env))
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _ROOT + (os.pathsep + path if path else "")
        return env


FRAMEWORKS: dict[str, Framework] = {fw.name: fw for fw in [
    Framework("keras", "keras_models", "Keras 3 on TensorFlow (a keras.Model, compile, fit)",
              ("tensorflow", "keras"), suffix=".keras", weight_file="Keras", weight_format="keras",
              data_parallel=True, cli_train=True, compared_by_default=True, own_models=True,
              shares_process="tensorflow"),
    Framework("tf1", "tf1_compat", "TF1-style graphs (tf.compat.v1: placeholders, "
              "get_variable, Session)", ("tensorflow",), suffix=".ckpt",
              weight_file="TF1 checkpoint prefix", weight_format="tf1",
              cli_train=True, compared_by_default=True, own_models=True,
              shares_process="tensorflow"),
    Framework("torch", "torch_models", "PyTorch (nn.Module, torch.optim)", ("torch",),
              suffix=".pt", weight_file="torch state_dict", weight_format="torch",
              data_parallel=True, cli_train=True,
              compared_by_default=True, own_models=True, image_layout="nchw"),
    # the Keras package again, in a process whose KERAS_BACKEND is torch
    Framework("keras-torch", "keras_models", "Keras 3 on the torch backend (the keras "
              "package, KERAS_BACKEND=torch)", ("torch", "keras"),
              env=(("KERAS_BACKEND", "torch"),), suffix=".keras", weight_file="Keras",
              weight_format="keras"),
    # Keras 2 in a process of its own: TF_USE_LEGACY_KERAS=1 makes tf.keras tf_keras there
    Framework("keras2", "keras2_models", "Keras 2 (tf_keras: Sequential/compile/fit, in a "
              "process with TF_USE_LEGACY_KERAS=1)", ("tensorflow", "tf_keras"),
              env=(("TF_USE_LEGACY_KERAS", "1"),), suffix=".h5", weight_file="Keras 2 HDF5",
              weight_format="keras2", cli_train=True),
    # TF1 code as it was written (tf.compat.v1.layers, rnn_cell): Keras 2 again, own process.
    # No suffix of its own: its Saver checkpoints are .ckpt like tf1's, and zoo.interchange
    # tells them apart by their variable names (zoo convert / inspect read them anywhere).
    Framework("tf1-layers", "tf1_layers", "TF1 code as it was written (tf.compat.v1.layers, "
              "rnn_cell + dynamic_rnn, tf.compat.v1.train, Session; in a process with "
              "TF_USE_LEGACY_KERAS=1)", ("tensorflow", "tf_keras"),
              env=(("TF_USE_LEGACY_KERAS", "1"),), weight_file="TF1 checkpoint prefix "
              "(tf.compat.v1.layers names)", weight_format="tf1-layers", cli_train=True,
              # GRUCell is the reset-before GRU: the zoo's (reset_after=True) GRUs need Keras
              models_refused=("gru", "embedding_gru")),
    Framework("numpy", "zoo.reference", "the float64 numpy reference (hand-derived gradients)",
              (), fixed_dtype="float64", single_module=True),
]}
NAMES: tuple[str, ...] = tuple(FRAMEWORKS)


def names(**where: Any) -> tuple[str, ...]:
    """The names of the frameworks whose fields equal `where`, in registry order, e.g.
    `names(cli_train=True)` -> ("keras", "tf1", "torch")."""
    known = {f.name for f in fields(Framework)} | {"runs_on_torch", "legacy_keras"}
    bad = sorted(set(where) - known)
    if bad:
        raise TypeError(f"Framework has no field {', '.join(bad)}")
    return tuple(n for n, fw in FRAMEWORKS.items()
                 if all(getattr(fw, k) == v for k, v in where.items()))


#: `zoo compare`'s frameworks when --frameworks is not given
DEFAULT_COMPARE: tuple[str, ...] = names(compared_by_default=True)


def get(name: str, among: Iterable[str] | None = None) -> Framework:
    """The framework `name`; an unknown name (or one outside `among`) is an UnknownNameError
    that lists the known ones and suggests the closest."""
    allowed = list(NAMES if among is None else among)
    if name not in allowed:
        raise unknown_name("framework", name, allowed)
    return FRAMEWORKS[name]


def of_module(module: str) -> Framework:
    """The framework whose package holds `module` (e.g. "keras_models.distributed" ->
    keras: the first registered framework of that package)."""
    for fw in FRAMEWORKS.values():
        if module == fw.package or module.startswith(fw.package + "."):
            return fw
    raise ConfigError(f"module {module!r} belongs to no framework of the zoo "
                      f"({', '.join(sorted({fw.package for fw in FRAMEWORKS.values()}))}).")


def for_format(fmt: str) -> Framework:
    """The framework that reads and computes with weights of format `fmt`: the writer of a
    native format (keras, tf1, torch), the numpy reference for the canonical `.npz`."""
    if fmt == CANONICAL_FORMAT:
        return FRAMEWORKS["numpy"]
    for fw in FRAMEWORKS.values():
        if fw.weight_format == fmt:
            return fw
    raise unknown_name("weight format", fmt,
                       [*dict.fromkeys(f.weight_format for f in FRAMEWORKS.values()
                                       if f.weight_format), CANONICAL_FORMAT])


def import_in_order(frameworks: Iterable[str | Framework]) -> None:
    """Import the deep-learning modules of several frameworks about to share one process,
    torch first (importing tensorflow before torch has crashed on some builds)."""
    mods = {m for fw in frameworks for m in (get(fw) if isinstance(fw, str) else fw).imports}
    for m in sorted(mods, key=lambda m: (m != "torch", m)):
        if m == "keras":
            continue  # keras picks its backend on import: leave it to the framework's package
        importlib.import_module(m)
