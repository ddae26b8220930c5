"""Convert saved weights between the frameworks' native formats, .keras (Keras), .pt (torch
state_dict) and .ckpt (TF1 Saver checkpoint prefix), and the zoo's canonical .npz (canonical
names as keys, canonical layout: readable with numpy alone). The target format follows DST's
suffix or --to; every file is loaded safely (no unpickling) and checked against its JSON
sidecar, and every written file gets one.

DST named *.onnx exports the model to ONNX (opset 18) from its torch translation, whatever the
source format, checked in ONNX Runtime before it is written; an ONNX file the zoo wrote
converts back to any of the formats above (`zoo.onnx_io`).

A TF1 checkpoint the zoo did not write (a .ckpt prefix without a sidecar: what a TF1 script
built on tf.compat.v1.layers / rnn_cell saved) is read by its variable names (dense/kernel,
batch_normalization/moving_mean, rnn/lstm_cell/kernel, ...) and mapped to the zoo model its
names and shapes fit, or to --model NAME; the mapping is reported, optimizer slots are
skipped, and a variable no model can place is refused by name (`zoo inspect CKPT` shows the
whole mapping)."""

from __future__ import annotations

import argparse

from zoo.interchange import FORMATS

ONNX = ".onnx"  # zoo.onnx_io.SUFFIX (not imported here: the parser stays light)
_FORMATS = (*dict.fromkeys(FORMATS.values()), "onnx")


def add_arguments(p: argparse.ArgumentParser) -> None:
    suffixes = ", ".join(f"*{s}" for s in (*FORMATS, ONNX))
    p.add_argument("src", metavar="SRC",
                   help=f"weights to read: {suffixes} (an ONNX file the zoo exported)")
    p.add_argument("dst", metavar="DST", help=f"weights to write: {suffixes}")
    p.add_argument("--to", choices=_FORMATS, default=None,
                   help="target format (default: from DST's suffix)")
    p.add_argument("--force", action="store_true", help="overwrite an existing DST")
    p.add_argument("--model", metavar="NAME", default=None,
                   help="for a TF1 checkpoint without a zoo sidecar: the zoo model to map its "
                        "variables to (default: the one their names and shapes fit)")


def run(args: argparse.Namespace) -> int:
    from zoo import interchange, onnx_io

    if args.model is not None or interchange.reads_by_names(args.src):
        return convert_checkpoint(args)
    spec, weights, fmt = onnx_io.convert(args.src, args.dst, to=args.to, force=args.force)
    keep_label_names(args.src, args.dst)
    n = sum(int(v.size) for v in weights.values())
    extra = f", opset {onnx_io.OPSET}, checked in ONNX Runtime" if fmt == onnx_io.FORMAT else ""
    print(f"wrote {args.dst} ({fmt}{extra}, model {spec.name}, {n} parameters) from {args.src}")
    return 0


def keep_label_names(src: str, dst: str) -> None:
    """Carry the class names of `src` (a CSV of named classes, `zoo train --save`) into the
    sidecar of the converted `dst`, so predictions from it report them too."""
    from pathlib import Path

    from zoo import interchange
    from zoo.commands.train import read_label_names, write_label_names

    names = read_label_names(src)
    if names and interchange.sidecar_path(dst).is_file():
        import json

        column = json.loads(interchange.sidecar_path(src).read_text())["labels"].get("column", "")
        write_label_names(Path(dst), names, column)


def convert_checkpoint(args: argparse.Namespace) -> int:
    """`zoo convert OLD.ckpt NEW` for a TF1 checkpoint read by its variable names
    (`zoo.interchange.read_tf1_checkpoint`): report the model and what was assumed, then
    write NEW in any format (or export it to ONNX)."""
    from zoo import frameworks, interchange, onnx_io
    from zoo.errors import ConfigError

    if not interchange.reads_by_names(args.src):
        raise ConfigError(f"--model applies to TF1 checkpoints without a zoo sidecar (*.ckpt, read "
                          f"by their variable names); {args.src!r} is not one: its sidecar "
                          "names its model, drop --model.")
    to_onnx = onnx_io.is_onnx(args.dst, args.to)
    fmt = onnx_io.FORMAT if to_onnx else interchange.format_of(args.dst, args.to)
    interchange.check_exists("tf1", args.src)
    interchange.check_target(fmt, args.dst, args.force)  # fail before reading anything
    writer = frameworks.FRAMEWORKS["torch"] if to_onnx else frameworks.for_format(fmt)
    frameworks.import_in_order([writer, frameworks.for_format("tf1")])  # torch first
    spec = None
    if interchange.sidecar_path(args.src).is_file():  # tf1_layers.io.save's own sidecar
        spec = interchange.read_sidecar(interchange.TF1_LAYERS, args.src)[0]
    m = interchange.read_tf1_checkpoint(args.src, model=args.model, spec=spec)
    print(f"read {args.src}: {len(m.variables) - len(m.skipped)} variables of TF1 layer code "
          f"as model {m.spec.name}" + (f", {len(m.skipped)} of optimizer state skipped"
                                       if m.skipped else ""))
    for note in m.notes:
        print(f"note: {note}")
    if to_onnx:
        onnx_io.export(m.spec, m.weights, args.dst, force=args.force)
    else:
        interchange.save(fmt, m.spec, m.weights, args.dst, force=args.force)
    n = sum(int(v.size) for v in m.weights.values())
    extra = f", opset {onnx_io.OPSET}, checked in ONNX Runtime" if to_onnx else ""
    print(f"wrote {args.dst} ({fmt}{extra}, model {m.spec.name}, {n} parameters) from "
          f"{args.src}")
    return 0
