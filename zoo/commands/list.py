"""List the models, the frameworks that implement each, the optimizers and the datasets.
Nothing here imports a deep-learning framework: module files are located, not imported."""

from __future__ import annotations

import argparse
import importlib.util

from zoo.data import DATASETS
from zoo.optimizers import OPTIMIZERS
from zoo.specs import MODELS

FRAMEWORK_PACKAGES = {"keras": "keras_models", "tf1": "tf1_compat", "torch": "torch_models"}


def available() -> dict[str, dict[str, bool]]:
    """model -> framework -> whether `<package>/<model>.py` exists."""
    out: dict[str, dict[str, bool]] = {}
    for model in (*MODELS, "quadratic"):
        out[model] = {fw: importlib.util.find_spec(f"{pkg}.{model}") is not None
                      for fw, pkg in FRAMEWORK_PACKAGES.items()}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")


def run(args: argparse.Namespace) -> int:
    matrix = available()
    if args.json:
        import json

        print(json.dumps({"models": matrix, "optimizers": list(OPTIMIZERS),
                          "datasets": list(DATASETS)}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="models by framework")
    t.add_column("model")
    for fw in FRAMEWORK_PACKAGES:
        t.add_column(fw, justify="center")
    t.add_column("what")
    for model, fws in matrix.items():
        desc = MODELS[model][2] if model in MODELS else "minimise a*w^2 + b*w + c (seeds 000, 004)"
        t.add_row(model, *("yes" if fws[fw] else "-" for fw in FRAMEWORK_PACKAGES), desc)
    console = Console() if Console().is_terminal else Console(width=150)
    console.print(t)
    console.print(f"optimizers: {', '.join(OPTIMIZERS)}")
    console.print(f"datasets:   {', '.join(DATASETS)}")
    console.print("keras-torch (Keras 3 on the torch backend) runs every keras model.")
    return 0
