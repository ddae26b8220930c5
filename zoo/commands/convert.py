"""Convert saved weights between the frameworks' native formats, .keras (Keras), .pt (torch
state_dict) and .ckpt (TF1 Saver checkpoint prefix), and the zoo's canonical .npz (canonical
names as keys, canonical layout: readable with numpy alone). The target format follows DST's
suffix or --to; every file is loaded safely (no unpickling) and checked against its JSON
sidecar, and every written file gets one.

DST named *.onnx exports the model to ONNX (opset 18) from its torch translation, whatever the
source format, checked in ONNX Runtime before it is written; an ONNX file the zoo wrote
converts back to any of the formats above (`zoo.onnx_io`)."""

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


def run(args: argparse.Namespace) -> int:
    from zoo import onnx_io

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
