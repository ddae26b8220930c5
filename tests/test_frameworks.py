"""The framework registry (`zoo.frameworks`): the one list of frameworks in production code,
importing it imports no framework, each framework's accessors import that framework only, and
every framework (and the numpy reference) implements the protocol of docs/layers.md."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import frameworks as F
from zoo.errors import ConfigError, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
#: the production code that must take its frameworks from the registry (scripts/ is the
#: benchmark's own matrix of paths)
PRODUCTION = ("zoo", "keras_models", "tf1_compat", "torch_models")
#: collections of framework names that are not framework lists, with the reason
ALLOWED: set[tuple[str, str]] = set()


def test_the_registry():
    assert F.NAMES == ("keras", "tf1", "torch", "keras-torch", "keras2", "tf1-layers", "numpy")
    assert F.DEFAULT_COMPARE == ("keras", "tf1", "torch")
    assert F.names(cli_train=True) == ("keras", "tf1", "torch", "keras2", "tf1-layers")
    assert F.names(data_parallel=True) == ("keras", "torch")
    assert F.names(runs_on_torch=True) == ("torch", "keras-torch")
    assert {n: fw.package for n, fw in F.FRAMEWORKS.items()} == {
        "keras": "keras_models", "tf1": "tf1_compat", "torch": "torch_models",
        "keras-torch": "keras_models", "keras2": "keras2_models", "tf1-layers": "tf1_layers",
        "numpy": "zoo.reference"}
    assert {n: fw.suffix for n, fw in F.FRAMEWORKS.items()} == {
        "keras": ".keras", "tf1": ".ckpt", "torch": ".pt", "keras-torch": ".keras", "keras2": ".h5",
        "tf1-layers": None, "numpy": None}
    assert [F.get(n).module_name("train") for n in F.NAMES] == [
        "keras_models.train", "tf1_compat.train", "torch_models.train", "keras_models.train",
        "keras2_models.train", "tf1_layers.train", "zoo.reference"]
    assert F.get("numpy").fixed_dtype == "float64"
    # the formats: each native one read by its writer, the canonical .npz by the reference
    assert [F.for_format(f).name for f in ("keras", "tf1", "torch", "npz")] == \
        ["keras", "tf1", "torch", "numpy"]
    assert F.for_format("tf1-layers").name == "tf1-layers"  # no suffix: read by its names
    assert F.of_module("keras_models.distributed").name == "keras"
    assert F.of_module("zoo.reference").name == "numpy"


def test_lookups_fail_with_the_fix():
    with pytest.raises(UnknownNameError, match=r"^unknown framework 'pytorch'\. Did you mean "
                       r"'torch'\? Known frameworks: keras, keras-torch, keras2, numpy, tf1, "
                       r"tf1-layers, torch\.$"):
        F.get("pytorch")
    with pytest.raises(UnknownNameError, match=r"Known frameworks: keras, keras2, tf1, tf1-layers, torch\.$"):
        F.get("numpy", among=F.names(cli_train=True))
    with pytest.raises(ConfigError, match=r"^numpy \(zoo\.reference\) has no io module"):
        F.get("numpy").module_name("io")
    with pytest.raises(ConfigError, match=r"^data-parallel training exists for keras and torch, "
                       r"not tf1\.$"):
        F.get("tf1").module_name("distributed")
    with pytest.raises(ConfigError, match=r"^module 'sklearn\.linear_model' belongs to no "
                       r"framework"):
        F.of_module("sklearn.linear_model")
    with pytest.raises(TypeError, match="no field colour"):
        F.names(colour="red")


def test_environments():
    base = {"PATH": "/bin", "KERAS_BACKEND": "jax", "PYTHONPATH": "/elsewhere"}
    for n, fw in F.FRAMEWORKS.items():
        env = fw.environ(base)
        if "TF_USE_LEGACY_KERAS" in dict(fw.env):  # Keras 2 processes: no Keras 3 to configure
            assert env["TF_USE_LEGACY_KERAS"] == "1" and env["KERAS_BACKEND"] == "jax"
        else:
            assert env["KERAS_BACKEND"] == ("torch" if n == "keras-torch" else "tensorflow")
        assert env["PYTHONPATH"].split(":") == [str(ROOT), "/elsewhere"]
        assert env["PATH"] == "/bin" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert base["KERAS_BACKEND"] == "jax"  # the base is not modified


def test_interchange_formats_come_from_the_registry():
    from zoo import interchange

    assert interchange.FORMATS == {".keras": "keras", ".ckpt": "tf1", ".pt": "torch",
                                   ".h5": "keras2", ".npz": "npz"}


def _framework_lists(path: Path) -> list[tuple[int, str, list[str]]]:
    """Literal collections of two or more framework (or framework package) names in a file:
    tuples, lists, sets, comma-joined strings, and dicts keyed by framework names whose values
    are names (package, module, suffix)."""
    known = set(F.NAMES) | {fw.package for fw in F.FRAMEWORKS.values()}
    tree = ast.parse(path.read_text())
    names = {id(node.value): t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        consts: list = []
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            consts = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) for v in node.values):
            consts = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            consts = node.value.split(",") if "," in node.value else []
        hits = sorted({c for c in consts if isinstance(c, str) and c.strip() in known})
        if len(hits) >= 2:
            found.append((node.lineno, names.get(id(node), ""), hits))
    return found


def test_the_registry_is_the_only_list_of_frameworks():
    bad = []
    for top in PRODUCTION:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "zoo/frameworks.py":
                continue
            bad += [f"{rel}:{line} {name} {hits}" for line, name, hits in _framework_lists(path)
                    if (rel, name) not in ALLOWED]
    assert bad == [], "framework lists outside zoo.frameworks:\n" + "\n".join(bad)


def test_the_scan_finds_a_list(tmp_path):
    """The scan above is not vacuous: the tables it replaced are found."""
    f = tmp_path / "old.py"
    f.write_text('A = ("keras", "tf1", "torch")\nB = {"keras": "keras_models", "torch": '
                 '"torch_models"}\nC = "keras,tf1"\nD = {"keras": 1.0, "tf1": 2.0}\n')
    assert [(line, hits) for line, _, hits in _framework_lists(f)] == [
        (1, ["keras", "tf1", "torch"]), (2, ["keras", "torch"]), (3, ["keras", "tf1"]),
        (4, ["keras", "tf1"])]


def test_importing_the_registry_imports_no_framework():
    code = ("import sys, zoo.frameworks as F; F.get('torch').environ(); F.names(cli_train=True); "
            "print([m for m in ('tensorflow', 'torch', 'keras', 'jax', 'keras_models', "
            "'tf1_compat', 'torch_models') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


#: what the numpy reference implements (no io: it computes with canonical weights in memory;
#: its losses are numpy functions, not modules to build)
REFERENCE = ("build", "get_weights", "set_weights", "train", "predict", "evaluate",
             "step_details")
#: positional parameters every implementation takes, and keywords the zoo passes
SIGNATURES = {"build": (1, ()), "get_weights": (1, ()), "set_weights": (2, ()),
              "make_loss": (1, ()), "outputs": (2, ()),
              "train": (4, ("init", "record_weights", "progress")),
              "predict": (3, ()), "evaluate": (4, ()), "step_details": (4, ("masks", "l2")),
              "save": (3, ("force",)), "load": (1, ())}

PROBE = """
import inspect, json, sys
import zoo.frameworks as F
fw = F.get(sys.argv[1])
functions = {n: fw.function(n) for n in json.loads(sys.argv[2])}
signatures = {}
for n, f in functions.items():
    ps = list(inspect.signature(f).parameters.values())
    signatures[n] = [len([p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]),
                     [p.name for p in ps]]
backend = None
if "keras" in sys.modules:
    import keras
    backend = keras.backend.backend()
print(json.dumps({"signatures": signatures, "backend": backend,
                  "modules": sorted(m for m in ("tensorflow", "torch", "keras", "keras_models",
                                                 "tf1_compat", "torch_models")
                                    if m in sys.modules)}))
"""


@pytest.mark.parametrize("name", F.NAMES)
def test_each_framework_implements_the_protocol_and_imports_itself_only(name):
    """In a process of the framework's own (its environment), every protocol function
    resolves through the registry, takes the contract's parameters, and nothing of another
    framework is imported."""
    fw = F.get(name)
    wanted = REFERENCE if fw.single_module else tuple(F.PROTOCOL)
    r = subprocess.run([sys.executable, "-c", PROBE, name, json.dumps(wanted)],
                       capture_output=True, text=True, timeout=300, env=fw.environ())
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for fn, (n_positional, names) in got["signatures"].items():
        need, keywords = SIGNATURES[fn]
        assert n_positional >= need, (fn, names)
        assert set(keywords) <= set(names), (fn, names)
    own = {fw.package.split(".")[0], *fw.imports} - {"zoo"}
    # the other frameworks' packages and engines ("keras" is not one: TensorFlow 2.21
    # imports keras itself)
    others = {m for other in F.FRAMEWORKS.values() for m in (other.package, *other.imports)
              if not other.single_module} - own - {"keras"}
    leaked = set(got["modules"]) & others
    assert leaked == set(), leaked
    if "keras" in fw.imports:
        assert got["backend"] == dict(fw.env)["KERAS_BACKEND"]
