"""Summarise a dataset: samples in train and test, features, classes and their counts (or the
target's range), dtype and where it was loaded from; for a CSV of class names, which name each
class id stands for, and notes on the labels (classes without samples, a mixed label column)."""

from __future__ import annotations

import argparse
import json

from zoo import data


def add_data_arguments(p: argparse.ArgumentParser, *, name_required: bool = False) -> None:
    """The dataset options every command shares."""
    p.add_argument("--data-dir", metavar="DIR",
                   help=f"directory with MNIST IDX .gz files or mnist.npz (or set {data.DATA_DIR_ENV})")
    p.add_argument("--csv", metavar="PATH",
                   help="your own CSV file: numeric features and a label column (numbers or "
                        "class names), fields separated by ',', ';' or tab, a header row or none")
    p.add_argument("--target", metavar="COLUMN",
                   help="the CSV's label column: its header name, or its index (0 the first, "
                        "-1 the last; the only way in a file without a header)")
    p.add_argument("--npz", metavar="PATH", help="your own .npz file with arrays X and y")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and batch order (default 0)")
    p.add_argument("--split", choices=data.SPLITS,
                   help="'fixed': the dataset's own split (the default for "
                        f"{' and '.join(data.FIXED_SPLITS)}); 'seeded': a stratified 80/20 split "
                        "drawn by --seed (the default for the others)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type (default float32)")


def load_from_args(args: argparse.Namespace, name: str | None) -> data.Dataset:
    return data.load(name, data_dir=args.data_dir, csv=args.csv, target=args.target,
                     npz=args.npz, seed=args.seed, dtype=args.dtype, split=args.split)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME",
                   help=f"dataset name: {', '.join(data.DATASETS)}")
    add_data_arguments(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list", action="store_true", help="list the known datasets")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, (_, task, _, desc) in data.DATASETS.items():
            print(f"{name:14s} {task:15s} {desc}")
        return 0
    ds = load_from_args(args, args.name)
    s = ds.summary()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"dataset {s['name']} ({s['task']})", show_header=False)
    t.add_row("source", s["source"])
    shape = f" ({data.shape_text(s['image_shape'])} images)" if "image_shape" in s else ""
    t.add_row("samples", f"{s['train_samples']:,} train / {s['test_samples']:,} test")
    t.add_row("split", s["split"])
    t.add_row("features", f"{s['features']}{shape}")
    t.add_row("dtype", s["dtype"])
    if ds.task == "regression":
        lo, hi = s["target_range"]
        t.add_row("target range", f"{lo:.4g} .. {hi:.4g}")
    else:
        t.add_row("classes", str(s["classes"]))
        t.add_row("train counts", " ".join(map(str, s["train_class_counts"])))
        t.add_row("test counts", " ".join(map(str, s["test_class_counts"])))
        if ds.label_names:
            t.add_row("labels", f"{ds.target_name}: {ds.label_mapping()}")
    console = Console()
    console.print(t)
    print_label_notes(ds, console, mapping=False)  # the table shows the mapping
    return 0


def print_label_notes(ds: data.Dataset, console=None, *, mapping: bool = True) -> None:
    """One "note: ..." line per thing the user should know about the labels (the mapping of
    class names to ids, a mixed label column, classes without samples)."""
    for note in ds.label_notes(mapping=mapping):
        if console is None:
            print(f"note: {note}")
        else:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
