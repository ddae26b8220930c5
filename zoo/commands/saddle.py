"""Count the steps each optimizer needs to escape the saddle of f(x, y) = x^2 - y^2 from
(1, 0.001) (seed 000: near saddles and plateaus the gradient is tiny; momentum, RMSprop and
Adam get away faster than plain gradient descent), in every framework."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from zoo.errors import ConfigError
from zoo.frameworks import NAMES
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.quadratic import (
    FRAMEWORKS,
    SADDLE_START,
    SADDLE_THRESHOLD,
    check_dtype,
    check_start,
    check_steps,
    parse_frameworks,
    reference_saddle,
    run_saddle_frameworks,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frameworks", default=",".join(n for n in NAMES if n in FRAMEWORKS),
                   help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help="comma-separated optimizers (default: all)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--start", default=",".join(map(str, SADDLE_START)), metavar="X,Y",
                   help="starting point (default 1,0.001)")
    p.add_argument("--threshold", type=float, default=SADDLE_THRESHOLD,
                   help="escaped once |y| >= this (default 1)")
    p.add_argument("--max-steps", type=int, default=2000, help="give up after (default 2000)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    p.add_argument("--out", metavar="DIR", help="write saddle.png (|y| per step) here")
    p.add_argument("--json", metavar="PATH", help="write the escape steps as JSON")


def run(args: argparse.Namespace) -> int:
    names = parse_frameworks(args.frameworks)
    specs = [OptimizerSpec(n.strip(), lr=args.lr) for n in args.optimizers.split(",")]
    try:
        start = check_start([float(v) for v in args.start.split(",")], 2)
    except ValueError:
        raise ConfigError(f"--start must be two numbers X,Y, got {args.start!r}.") from None
    if not (math.isfinite(args.threshold) and args.threshold > abs(start[1])):
        raise ConfigError(f"--threshold must be finite and above |y0| = {abs(start[1]):g}, "
                          f"got {args.threshold!r}.")
    max_steps = check_steps(args.max_steps)
    dtype = check_dtype(args.dtype)

    # keep TensorFlow's C++ logs and its Python deprecation/retracing notices off the table
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    table_data = run_saddle_frameworks(names, specs, start, args.threshold, max_steps, dtype)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"steps to escape f = x^2 - y^2 from ({start[0]:g}, {start[1]:g}) "
                        f"to |y| >= {args.threshold:g}, lr={args.lr:g} ({dtype})")
    table.add_column("optimizer")
    for n in [*names, "numpy"]:
        table.add_column(n, justify="right")
    table.add_column("agree")
    for opt, row in table_data.items():
        vals = [row[n] for n in [*names, "numpy"]]
        table.add_row(opt, *("never" if v is None else str(v) for v in vals),
                      "yes" if len({row[n] for n in names}) == 1 else "NO")
    console = Console()
    console.print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"escape_steps": table_data, "settings": {
            "start": list(start), "threshold": args.threshold, "lr": args.lr,
            "max_steps": max_steps, "dtype": dtype}}))
        console.print(f"wrote {path}")
    if args.out:
        png = _plot(specs, start, args.threshold, max_steps, Path(args.out) / "saddle.png")
        console.print(f"wrote {png}")
    return 0


def _plot(specs: list[OptimizerSpec], start: tuple[float, ...], threshold: float,
          max_steps: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for spec in specs:  # the frameworks agree step by step, so the reference stands for all
        y = reference_saddle(spec, start, max_steps, threshold)["y"]
        ax.semilogy(np.arange(len(y)), np.abs(y), label=spec.name)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set(xlabel="step", ylabel="|y|", title="escaping the saddle of x^2 - y^2")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
