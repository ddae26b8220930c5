"""Convert saved weights between the frameworks' native formats: .keras (Keras), .pt (torch
state_dict) and .ckpt (TF1 Saver checkpoint prefix). The target format follows DST's suffix or
--to; every file is loaded safely (no unpickling) and checked against its JSON sidecar."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="weights to read: *.keras, *.pt or *.ckpt")
    p.add_argument("dst", metavar="DST", help="weights to write: *.keras, *.pt or *.ckpt")
    p.add_argument("--to", choices=("keras", "torch", "tf1"), default=None,
                   help="target format (default: from DST's suffix)")
    p.add_argument("--force", action="store_true", help="overwrite an existing DST")


def run(args: argparse.Namespace) -> int:
    from zoo import interchange

    spec, weights, fmt = interchange.convert(args.src, args.dst, to=args.to, force=args.force)
    n = sum(int(v.size) for v in weights.values())
    print(f"wrote {args.dst} ({fmt}, model {spec.name}, {n} parameters) from {args.src}")
    return 0
