"""Minimise J(w) = a*w^2 + b*w + c (seeds 000/004: w^2 - 10w + 25, lr 0.01, 1000 steps from
w = 0) in Keras 3, TF1 and PyTorch with the same optimizer, and show how closely they agree
with each other and with the closed form (plain GD) or the float64 numpy reference."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from zoo.frameworks import NAMES
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.quadratic import (
    FRAMEWORKS,
    check_coefficients,
    check_dtype,
    check_start,
    check_steps,
    closed_form,
    parse_frameworks,
    reference_minimize,
    run_frameworks,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frameworks", default=",".join(n for n in NAMES if n in FRAMEWORKS),
                   help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    p.add_argument("--coefficients", default="1,-10,25", metavar="A,B,C",
                   help="J(w) = A*w^2 + B*w + C with A > 0 (default 1,-10,25; "
                        "write --coefficients=-1,... if A is negative)")
    p.add_argument("--w0", type=float, default=0.0, help="starting point (default 0)")
    p.add_argument("--optimizer", default="sgd", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    p.add_argument("--out", metavar="DIR", help="write quadratic.png (trajectories) here")
    p.add_argument("--json", metavar="PATH", help="write every step's w and J as JSON")


def run(args: argparse.Namespace) -> int:
    # validate everything before the (slow) framework imports
    names = parse_frameworks(args.frameworks)
    coeffs = check_coefficients(args.coefficients)
    (w0,) = check_start([args.w0], 1)
    steps = check_steps(args.steps)
    dtype = check_dtype(args.dtype)
    spec = OptimizerSpec(args.optimizer, lr=args.lr)

    # keep TensorFlow's C++ logs and its Python deprecation/retracing notices off the table
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    runs = run_frameworks(names, coeffs, w0, spec, steps, dtype)
    if spec.name == "sgd":
        ref_name, ref = "closed form", closed_form(coeffs, w0, spec.lr, steps)
    else:
        ref_name, ref = "float64 reference", reference_minimize(coeffs, w0, spec, steps)["w"]

    from rich.console import Console
    from rich.table import Table

    a, b, c = coeffs
    table = Table(title=f"J(w) = {a:g}w^2 {b:+g}w {c:+g}, {spec.name} lr={spec.lr:g}, "
                        f"{steps} steps from w0={w0:g} ({dtype})")
    table.add_column("framework")
    table.add_column("final w", justify="right")
    table.add_column("final J", justify="right")
    table.add_column(f"max |w - {ref_name}|", justify="right")
    for n, r in runs.items():
        table.add_row(n, f"{r['w'][-1]:.9g}", f"{r['cost'][-1]:.6g}",
                      f"{np.abs(r['w'].astype(np.float64) - ref).max():.3g}")
    console = Console()
    console.print(table)
    pairs = [(x, y) for i, x in enumerate(runs) for y in list(runs)[i + 1:]]
    if pairs:
        diffs = {f"{x}-{y}": float(np.abs(runs[x]["w"].astype(np.float64)
                                          - runs[y]["w"].astype(np.float64)).max())
                 for x, y in pairs}
        worst = max(diffs, key=diffs.__getitem__)
        console.print(f"max difference between frameworks over all steps: "
                      f"{diffs[worst]:.3g} ({worst})")

    if args.json:
        doc = {"frameworks": {n: {"w": r["w"].astype(float).tolist(),
                                  "cost": r["cost"].astype(float).tolist()}
                              for n, r in runs.items()},
               "settings": {"coefficients": list(coeffs), "w0": w0, "optimizer": spec.to_dict(),
                            "steps": steps, "dtype": dtype},
               "reference": {"name": ref_name, "w": ref.tolist()}}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        console.print(f"wrote {path}")
    if args.out:
        png = _plot(runs, ref, ref_name, Path(args.out) / "quadratic.png", table.title or "")
        console.print(f"wrote {png}")
    return 0


def _plot(runs: dict[str, dict[str, np.ndarray]], ref: np.ndarray, ref_name: str, path: Path,
          title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    k = np.arange(len(ref))
    ax1.plot(k, ref, "k-", lw=3, alpha=0.3, label=ref_name)
    for n, r in runs.items():
        ax1.plot(k, r["w"], lw=1, label=n)
        ax2.semilogy(k, np.abs(r["w"].astype(np.float64) - ref) + 1e-12, lw=1, label=n)
    ax1.set(xlabel="step", ylabel="w", title="trajectory")
    ax2.set(xlabel="step", ylabel=f"|w - {ref_name}| (+1e-12)", title="distance")
    ax1.legend()
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
