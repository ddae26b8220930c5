"""List the models, the frameworks that run each, the optimizers and the datasets.
Nothing here imports a deep-learning framework: module files are located, not imported."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from zoo.data import DATASETS, IMAGE_SHAPES
from zoo.frameworks import FRAMEWORKS
from zoo.optimizers import OPTIMIZERS
from zoo.specs import MODELS

#: the gradient-descent demo of seeds 000 and 004 (`zoo quadratic`): not a layer model
QUADRATIC = "quadratic"


def _exists(module: str) -> bool:
    """Whether `module` exists, without importing it or its package (a Keras 2 package
    refuses to import in this process)."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except ModuleNotFoundError:
        return False
    if spec is None or not rest:
        return spec is not None
    if not spec.submodule_search_locations:
        return False
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def available() -> dict[str, dict[str, bool]]:
    """model -> framework -> whether the framework runs it: every model of `zoo.models` runs
    in every framework that implements the protocol (its model module exists); the quadratic
    demo where `<package>/quadratic.py` exists."""
    from zoo.quadratic import FRAMEWORKS as QUADRATIC_FRAMEWORKS

    runs = {n: _exists(fw.module_name("model")) for n, fw in FRAMEWORKS.items()}
    out = {model: {n: ok and model not in FRAMEWORKS[n].models_refused
                   for n, ok in runs.items()} for model in MODELS}
    out[QUADRATIC] = {n: n in QUADRATIC_FRAMEWORKS and _exists(QUADRATIC_FRAMEWORKS[n])
                      for n in FRAMEWORKS}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")


def run(args: argparse.Namespace) -> int:
    matrix = available()
    if args.json:
        import json

        print(json.dumps({
            "models": matrix,
            "frameworks": {n: {"package": fw.package, "description": fw.description,
                               "weights": fw.suffix, "data_parallel": fw.data_parallel,
                               "zoo_train": fw.cli_train} for n, fw in FRAMEWORKS.items()},
            "optimizers": list(OPTIMIZERS), "datasets": list(DATASETS)}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="models by framework")
    t.add_column("model")
    for fw in FRAMEWORKS:
        t.add_column(fw, justify="center")
    t.add_column("input")
    t.add_column("what")
    for model, fws in matrix.items():
        arch = MODELS.get(model)
        desc = arch.description if arch else "minimise a*w^2 + b*w + c (seeds 000, 004)"
        kind = ({"rows": "image rows", "tokens": "token ids"}.get(arch.sequence or "",
                "images" if arch.image else "features") if arch else "-")
        t.add_row(model, *("yes" if fws[fw] else "-" for fw in FRAMEWORKS), kind, desc)
    console = Console() if Console().is_terminal else Console(width=170)
    console.print(t)
    f = Table(title="frameworks")
    for col in ("framework", "package", "weights", "data-parallel", "zoo train", "what"):
        f.add_column(col)
    for n, fw in FRAMEWORKS.items():
        f.add_row(n, fw.package, fw.suffix or "-", "yes" if fw.data_parallel else "-",
                  "yes" if fw.cli_train else "-", fw.description)
    console.print(f)
    console.print(f"optimizers: {', '.join(OPTIMIZERS)}")
    console.print(f"datasets:   {', '.join(DATASETS)} (images: "
                  + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in IMAGE_SHAPES.items())
                  + ")")
    return 0
