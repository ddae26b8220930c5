"""Train one model in one framework (in this process) from the zoo's canonical initial weights
(or --init WEIGHTS), print the final loss and the test metric, and optionally save the weights
in the framework's native format (.keras, .pt or a TF1 .ckpt prefix) or as the canonical .npz,
with a JSON sidecar.

Data read from a CSV of class names keeps them: `--save W` adds
`"labels": {"names": [...], "column": "..."}` to the sidecar `W.json` the zoo writes beside
every weights file (class id i is names[i]), so that `zoo predict W` can report names; the
sidecar is rewritten atomically (a temporary file moved over it) and its readers ignore keys
they do not know."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from zoo.commands.compare import add_train_arguments, build_specs, load_init
from zoo.commands.data import print_label_notes
from zoo.frameworks import CANONICAL_FORMAT, FRAMEWORKS, names

#: the frameworks `zoo train` runs in its own process
TRAINABLE = names(cli_train=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)
    p.add_argument("--framework", default=TRAINABLE[0], metavar="NAME",
                   help=f"{', '.join(TRAINABLE)} (default {TRAINABLE[0]})")
    p.add_argument("--save", metavar="PATH", default=None,
                   help="save the trained weights here: the framework's native format ("
                        + ", ".join(f"*{FRAMEWORKS[n].suffix} {n}" for n in TRAINABLE
                                    if FRAMEWORKS[n].suffix)
                        + ") or *.npz (canonical weights)")
    p.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                   help="save a checkpoint (weights, optimizer state, epoch) to DIR/<framework>"
                        ".ckpt.npz at the end of every epoch, atomically")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --checkpoint-dir (same options)")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing weights file or checkpoint")


def run(args: argparse.Namespace) -> int:
    from zoo import frameworks, interchange
    from zoo.errors import ConfigError
    from zoo.specs import init_weights

    if args.framework in frameworks.NAMES and args.framework not in TRAINABLE:
        raise ConfigError(f"zoo train runs {', '.join(TRAINABLE[:-1])} and {TRAINABLE[-1]} "
                          f"in its own process, not {args.framework}; train {args.framework} "
                          f"with `zoo compare MODEL --frameworks {args.framework},...`.")
    fw = frameworks.get(args.framework, among=TRAINABLE)
    if args.resume and not args.checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir DIR naming the checkpoint to continue.")
    if args.save:
        fmt = interchange.format_of(args.save)
        if fmt not in (fw.weight_format, CANONICAL_FORMAT):
            native = f"*{fw.suffix} (or *.npz, the canonical weights)" if fw.suffix else \
                "*.npz (the canonical weights)"
            raise ConfigError(f"--save {args.save!r} is a {fmt} file but the model is trained "
                              f"in {fw.name}; save it as {native} and use `zoo convert` for "
                              "other formats.")
        interchange.check_target(fmt, args.save, args.force)  # fail before training
    ds, model_spec, train_spec = build_specs(args)
    print_label_notes(ds)
    if args.init:
        init = load_init(args.init, model_spec, ds.name, train_spec.dtype, alongside=(fw.name,))
    else:
        init = init_weights(model_spec, seed=args.seed, dtype=train_spec.dtype)
    if train_spec.batch_size > len(ds.X_train):
        print(f"batch size {train_spec.batch_size} > {len(ds.X_train)} training samples: one "
              "full batch per epoch (full-batch gradient descent)")
    from zoo.distributed import data_parallel  # --workers N: docs/distributed.md

    pkg = data_parallel(fw.module("train"), fw.name, args.workers, cli=True)
    ckpt_args = {}
    if args.checkpoint_dir:
        ckpt_args = {"checkpoint_dir": args.checkpoint_dir, "resume": args.resume,
                     "force": args.force}
    if fw.name == "keras" and (args.workers or 1) == 1:
        # Keras's fast path: a whole epoch per tf.function call (bit-identical results,
        # tests/test_keras_models.py; ~4x faster at batch 32, docs/benchmarks.md).
        ckpt_args["steps_per_execution"] = -(-len(ds.X_train) // train_spec.batch_size)
    hist = pkg.train(model_spec, train_spec, ds.inputs(model_spec), ds.y_train, init,
                     **ckpt_args)
    metrics = pkg.evaluate(model_spec, hist.weights, ds.inputs(model_spec, "test"), ds.y_test)
    final = float(hist.losses[-1]) if len(hist.losses) else float("nan")
    print(f"{fw.name} {model_spec.name} on {ds.name}: {len(hist.losses)} steps, "
          f"final training loss {final:.6f}")
    metric = "mse" if "mse" in metrics else "accuracy"
    print(f"test loss {metrics['loss']:.6f}, test {metric} {metrics[metric]:.4f}")
    if args.save:
        interchange.save(interchange.format_of(args.save), model_spec, hist.weights, args.save,
                         force=args.force)
        if ds.label_names:
            write_label_names(args.save, ds.label_names, ds.target_name)
        print(f"wrote {args.save} (+ {interchange.sidecar_path(args.save).name}"
              f"{', with the class names' if ds.label_names else ''})")
    if hist.stopped_at is not None:
        sys.stderr.write(divergence_message(hist.stopped_at, len(ds.X_train), train_spec) + "\n")
        return 1
    return 0


def divergence_message(step: int, n_train: int, train_spec) -> str:
    """The one line `zoo train` ends with when the loss became non-finite (exit code 1)."""
    per_epoch = -(-n_train // train_spec.batch_size)
    lr = train_spec.optimizer.lr
    return (f"zoo train: diverged: the loss became non-finite at step {step} (epoch "
            f"{step // per_epoch + 1}, batch {step % per_epoch + 1}); training stopped there and "
            f"kept the last finite weights; the learning rate {lr:g} is too large, try a "
            f"smaller one, e.g. --lr {lr / 10:g}.")


def write_label_names(weights_path: str | os.PathLike, class_names: tuple[str, ...],
                      column: str = "") -> Path:
    """Record the class names of saved weights in their sidecar `<weights>.json` (written by
    `interchange.save` just before) as {"labels": {"names": [...], "column": ...}}, atomically."""
    from zoo import interchange

    side = interchange.sidecar_path(weights_path)
    doc = json.loads(side.read_text())
    doc["labels"] = {"names": [str(n) for n in class_names], "column": str(column)}
    with interchange.temp_path(side) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        interchange.replace_atomically(tmp, side)
    return side


def read_label_names(weights_path: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names `write_label_names` kept beside `weights_path`, or None (numeric labels,
    weights saved before names were kept, converted files, ONNX exports)."""
    from zoo import interchange
    from zoo.errors import DataError

    side = interchange.sidecar_path(weights_path)
    if not side.is_file():
        return None
    try:
        labels = json.loads(side.read_text()).get("labels")
    except (ValueError, AttributeError):
        return None  # the weights' loader names a broken sidecar
    if labels is None:
        return None
    found = labels.get("names") if isinstance(labels, dict) else None
    if not isinstance(found, list) or not found or not all(isinstance(n, str) for n in found):
        raise DataError(f"sidecar {str(side)!r} has a \"labels\" entry without a list of class "
                        "names; re-save the weights with `zoo train --save`.")
    return tuple(found)
