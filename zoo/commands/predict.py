"""Predict a dataset's test split with saved weights of any format (.keras, .pt, .ckpt, or the
canonical .npz), computed by the framework that wrote the file (the float64 numpy reference
for .npz), or with an ONNX file the zoo exported (.onnx), computed by ONNX Runtime on the CPU:
class probabilities, P(y=1) for logistic, sigmoid activations for nielsen, or values for
regression, as JSON {"predictions": [[...], ...]}.

For classifiers the JSON also holds "test_accuracy" (the predicted class, argmax or P > 0.5,
against the test labels), and when the weights' sidecar keeps the class names of the CSV they
were trained on (`zoo train --save`), "label_names" and "predicted_classes" (a name per
sample). Test labels that are names are matched to the model's classes BY NAME, so a CSV that
lacks one of the training classes (and so numbers its names differently) is still scored
right; a name the model never saw counts as a wrong prediction and is noted."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from zoo.commands.data import add_data_arguments, load_from_args
from zoo.commands.train import read_label_names
from zoo.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", metavar="WEIGHTS",
                   help="saved weights: *.keras, *.pt, *.ckpt, *.npz (canonical) or *.onnx "
                   "(a zoo export, run in ONNX Runtime)")
    p.add_argument("--dataset", metavar="NAME", help="dataset name (see `zoo data --list`)")
    add_data_arguments(p)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="write the predictions here (default: print them)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def split_inputs(spec, ds, weights_path: str):
    """The dataset's test split in the input shape of the saved model `spec`, or a
    ConfigError naming what the model was trained on and what the dataset has."""
    from zoo.data import shape_text

    want = tuple(spec.input_shape)
    if len(want) == 2 and ds.image_shape is not None and \
            want[0] * want[1] == int(ds.n_features):
        return ds.inputs(spec, "test")   # an image read row by row (lstm, gru)
    have = ds.image_shape if len(want) == 3 else (ds.n_features,)
    if len(want) == 3 and have is None:
        what, got = f"{shape_text(want)} images", f"{ds.n_features} flat features"
    elif have is not None and tuple(have) != want:
        what = f"{shape_text(want)} images" if len(want) == 3 else f"{want[0]} features"
        got = f"{shape_text(have)} images" if len(want) == 3 else f"{have[0]}"
    else:
        return ds.inputs(spec, "test")
    raise ConfigError(f"{weights_path!r} holds a {spec.name} model for {what} but dataset "
                      f"{ds.name!r} has {got}; predict the dataset the model was trained on.")


def run(args: argparse.Namespace) -> int:
    from zoo import frameworks, interchange, onnx_io

    on_onnx = onnx_io.is_onnx(args.weights)
    if on_onnx:
        fmt = onnx_io.FORMAT
        onnx_io.check_exists(args.weights)
    else:
        fmt = interchange.stored_format(args.weights)
        interchange.check_exists(fmt, args.weights)
    if args.json and Path(args.json).exists() and not args.force:
        raise ConfigError(f"{args.json!r} already exists; pass --force to overwrite it.")
    if args.dataset is None and args.csv is None and args.npz is None:
        raise ConfigError("name a dataset with --dataset NAME, or pass --csv PATH --target "
                          "COLUMN or --npz PATH.")
    ds = load_from_args(args, args.dataset)
    if on_onnx:
        spec = onnx_io.read_spec(args.weights)
        _, pred = onnx_io.predict(args.weights, split_inputs(spec, ds, args.weights))
    else:
        spec, weights = interchange.load(args.weights)
        X = split_inputs(spec, ds, args.weights)
        pred = frameworks.for_format(fmt).predict(spec, weights, X)
    doc = {"predictions": [[float(v) for v in row] for row in pred.reshape(len(pred), -1)],
           "model": spec.name, "format": fmt, "dataset": ds.name}
    names = None if on_onnx else read_label_names(args.weights)
    doc.update(class_report(spec, pred, ds, names, args.weights))
    text = json.dumps(doc)
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(out)
        acc = f"; test accuracy {doc['test_accuracy']:.4f}" if "test_accuracy" in doc else ""
        print(f"wrote {args.json} ({len(pred)} predictions, {fmt} {spec.name}{acc})")
        if names:
            counts = Counter(doc["predicted_classes"])
            print("predicted classes: " + ", ".join(f"{n} {counts[n]}" for n in names))
        for note in doc.get("notes", []):
            print(f"note: {note}")
    else:
        print(text)
    return 0


def class_report(spec, pred, ds, names: tuple[str, ...] | None, weights_path: str) -> dict:
    """For a classifier: {"test_accuracy"} and, with the model's class `names`,
    {"label_names", "predicted_classes"}; a regression model gets {}. Test labels given as
    names (`ds.label_names`) are scored by name against the model's names."""
    from zoo.errors import DataError
    from zoo.specs import MODELS

    task = MODELS[spec.name].task
    if task not in ("classification", "binary") or ds.task == "regression":
        return {}
    out = np.asarray(pred).reshape(len(pred), -1)
    ids = (out[:, 0] > 0.5).astype(np.int64) if task == "binary" else out.argmax(axis=1)
    n_classes = 2 if task == "binary" else out.shape[1]
    doc: dict = {}
    notes: list[str] = []
    y = np.asarray(ds.y_test).ravel().astype(np.int64)
    if names is not None:
        if len(names) != n_classes:
            raise DataError(f"the sidecar of {weights_path!r} names {len(names)} classes but the "
                            f"model has {n_classes}; re-save the weights with `zoo train --save`.")
        doc["label_names"] = list(names)
        doc["predicted_classes"] = [names[i] for i in ids]
        if ds.label_names is not None and tuple(ds.label_names) != tuple(names):
            index = {n: i for i, n in enumerate(names)}
            unseen = [n for n in ds.label_names if n not in index]
            y = np.array([index.get(ds.label_names[i], -1) for i in y], dtype=np.int64)
            if unseen:
                notes.append(f"the test labels hold {', '.join(map(repr, unseen))}, which the "
                             f"model was not trained on (its classes: {', '.join(names)}); "
                             "those samples count as wrong predictions.")
    doc["test_accuracy"] = float(np.mean(ids == y)) if len(y) else float("nan")
    if notes:
        doc["notes"] = notes
    return doc
