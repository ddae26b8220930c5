"""Predict a dataset's test split with saved weights of any format (.keras, .pt, .ckpt),
computed by the framework that wrote the file: class probabilities, P(y=1) for logistic, or
values for regression, as JSON {"predictions": [[...], ...]}."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.commands.data import add_data_arguments, load_from_args
from zoo.errors import ConfigError

_PACKAGES = {"keras": "keras_models", "tf1": "tf1_compat", "torch": "torch_models"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", metavar="WEIGHTS", help="saved weights: *.keras, *.pt or *.ckpt")
    p.add_argument("--dataset", metavar="NAME", help="dataset name (see `zoo data --list`)")
    add_data_arguments(p)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="write the predictions here (default: print them)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def run(args: argparse.Namespace) -> int:
    import importlib

    from zoo import interchange

    fmt = interchange.stored_format(args.weights)
    interchange.check_exists(fmt, args.weights)
    if args.json and Path(args.json).exists() and not args.force:
        raise ConfigError(f"{args.json!r} already exists; pass --force to overwrite it.")
    if args.dataset is None and args.csv is None and args.npz is None:
        raise ConfigError("name a dataset with --dataset NAME, or pass --csv PATH --target "
                          "COLUMN or --npz PATH.")
    ds = load_from_args(args, args.dataset)
    spec, weights = interchange.load(args.weights)
    if ds.n_features != spec.n_features:
        raise ConfigError(f"{args.weights!r} holds a {spec.name} model for {spec.n_features} "
                          f"features but dataset {ds.name!r} has {ds.n_features}; predict "
                          "the dataset the model was trained on.")
    pkg = importlib.import_module(f"{_PACKAGES[fmt]}.train")
    pred = pkg.predict(spec, weights, ds.X_test)
    doc = {"predictions": [[float(v) for v in row] for row in pred.reshape(len(pred), -1)],
           "model": spec.name, "format": fmt, "dataset": ds.name}
    text = json.dumps(doc)
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(out)
        print(f"wrote {args.json} ({len(pred)} predictions, {fmt} {spec.name})")
    else:
        print(text)
    return 0
