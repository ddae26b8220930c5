"""Train one model in several frameworks from the same data, initial weights, batch order and
optimizer; print a table of per-framework results and differences against a reference
framework, and write a JSON report, two plots and a Markdown summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.commands.data import add_data_arguments, load_from_args
from zoo.compare import RECORD_BUDGET_MB
from zoo.errors import ConfigError
from zoo.optimizers import OPTIMIZERS
from zoo.specs import MODELS

#: Default learning rates (SGD on standardised features, batch 32): large enough that 20 epochs
#: of the bundled datasets reach the accuracy floors of the tests, small enough not to diverge.
DEFAULT_LR = {"softmax": 0.5, "svm": 0.1, "linear": 0.1, "logistic": 0.5, "mlp": 0.1}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that trains."""
    p.add_argument("model", metavar="MODEL", help=f"model: {', '.join(MODELS)}")
    p.add_argument("--dataset", metavar="NAME", help="dataset name (see `zoo data --list`)")
    add_data_arguments(p)
    p.add_argument("--optimizer", default="sgd", metavar="NAME",
                   help=f"optimizer: {', '.join(OPTIMIZERS)} (default sgd)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: " + ", ".join(f"{m} {lr:g}" for m, lr in
                                                             DEFAULT_LR.items()) + ")")
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty 0.5*l2*|kernel|^2 (default 0)")
    p.add_argument("--native-dropout", action="store_true",
                   help="let every framework draw its own dropout masks (default: shared masks)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="data-parallel training on N workers for keras and torch, equal to one "
                        "process (docs/distributed.md; default 1)")


def build_specs(args: argparse.Namespace):
    """(dataset, model spec, train spec) from parsed arguments, with clear errors."""
    import numpy as np

    from zoo.optimizers import OptimizerSpec
    from zoo.specs import TrainSpec, model_spec_for

    if args.dataset is None and args.csv is None and args.npz is None:
        raise ConfigError("name a dataset with --dataset NAME, or pass --csv PATH --target "
                          "COLUMN or --npz PATH.")
    if args.model not in MODELS:  # fail before loading any data
        model_spec_for(args.model, 1, 1)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model]
    opt = OptimizerSpec(args.optimizer, lr=lr)
    train = TrainSpec(opt, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      dtype=args.dtype, l2=args.l2,
                      dropout_mode="native" if args.native_dropout else "shared")
    ds = load_from_args(args, args.dataset)
    task = MODELS[args.model][0]
    if task == "regression" and ds.task != "regression":
        raise ConfigError(f"model {args.model!r} is a regression model but dataset {ds.name!r} "
                          f"is a {ds.task} task; use softmax, svm, mlp or logistic.")
    if task != "regression" and ds.task == "regression":
        from zoo.data import not_labels_reason

        reason = not_labels_reason(np.concatenate([ds.y_train.ravel(), ds.y_test.ravel()]))
        why = f" (its targets hold {reason}, not class labels 0..C-1)" if reason else ""
        raise ConfigError(f"model {args.model!r} is a classifier but dataset {ds.name!r} is a "
                          f"regression task{why}; use the linear model, or encode the classes "
                          "as integers 0..C-1.")
    if task == "binary" and ds.task != "binary":
        raise ConfigError(f"model 'logistic' needs a binary task but dataset {ds.name!r} has "
                          f"{ds.n_classes} classes; use softmax (C classes) or a binary dataset "
                          "such as breast_cancer.")
    n_out = 1 if task in ("binary", "regression") else ds.n_outputs
    return ds, model_spec_for(args.model, ds.n_features, n_out), train


def _record_every_arg(text: str) -> bool | int:
    """--record-every: "auto" (True: every step within the budget) or an integer >= 1."""
    if text == "auto":
        return True
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--record-every must be 'auto' or an integer >= 1, got {text!r}.")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)
    p.add_argument("--frameworks", default="keras,tf1,torch",
                   help="comma-separated: keras, tf1, torch, keras-torch (Keras on the torch "
                        "backend), numpy (float64 reference). Default keras,tf1,torch")
    p.add_argument("--reference", default=None,
                   help="framework the others are compared against (default: the first)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write report.json, loss_curves.png, loss_diff.png and summary.md here "
                        "(default, unless --json is given: a new folder "
                        "runs/MODEL-DATASET-YYYYmmdd-HHMMSS)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the JSON report alone here")
    p.add_argument("--force", action="store_true", help="overwrite existing report files")
    p.add_argument("--record-every", metavar="N", default="auto",
                   help="record the weights after every N-th step (default auto: every step "
                        "while all frameworks' records fit in "
                        f"{int(RECORD_BUDGET_MB):,} MB, else the smallest N that fits)")
    p.add_argument("--diagnose", action="store_true",
                   help="for every framework that leaves the reference: the first step and the "
                        "first quantity that differs (logits, loss, gradients, batch, update) "
                        "and the likely cause")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zoo import compare as cmp
    from zoo import report

    frameworks = cmp.parse_frameworks(args.frameworks)
    record = _record_every_arg(args.record_every)
    ds, model_spec, train_spec = build_specs(args)
    plan = cmp.record_plan(model_spec, train_spec, len(ds.X_train), frameworks, record)
    if args.diagnose and plan.every > 1 and record is not True:
        raise ConfigError(f"--diagnose needs the weights after every step, not every "
                          f"{plan.every} steps; drop --record-every or pass --record-every 1.")
    if args.diagnose and plan.every > 1:  # fail before training, not after
        raise ConfigError(
            f"--diagnose needs the weights after every step, and all {plan.steps:,} steps of "
            f"this run would take {plan.full_mb:,.0f} MB (budget {plan.budget_mb:,.0f} MB); "
            "train fewer steps (--epochs, --batch-size) or pass --record-every 1 to record "
            "them anyway.")
    targets: list[Path] = []
    if args.out is None and args.json is None:  # --json alone writes the JSON alone
        import time

        name = args.dataset or Path(args.csv or args.npz).stem
        args.out = str(Path("runs") / f"{args.model}-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.out:
        targets += [Path(args.out) / f for f in report.REPORT_FILES]
    if args.json:
        targets.append(Path(args.json))
    report.check_writable(targets, args.force)  # fail before training, not after

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                  console=console, transient=False, disable=not console.is_terminal) as prog:
        tasks = {fw: prog.add_task(fw, total=None, loss="-") for fw in frameworks}

        def on_event(fw: str, ev: dict) -> None:
            if ev.get("event") == "start":
                prog.update(tasks[fw], total=ev["total_steps"])
            elif ev.get("event") == "progress":
                prog.update(tasks[fw], advance=1, loss=f"{ev['loss']:.4f}")

        comp = cmp.compare(model_spec, train_spec, ds, frameworks=frameworks,
                           reference=args.reference, on_event=on_event,
                           workers=args.workers, record_weights=record)
    if args.diagnose:
        cmp.diagnose_comparison(comp, ds)
    else:
        parted = [f"{fw} at step {r.first_divergent_step}" for fw, r in comp.results.items()
                  if r.first_divergent_step is not None]
        if parted:
            comp.notes.append(f"{', '.join(parted)} left the reference beyond the tolerance; "
                              "--diagnose names the first quantity that differs and tells "
                              "rounding (drift, a ReLU kink) from a different computation.")
    out = Console()
    if not out.is_terminal:
        out = Console(width=150)
    report.print_table(comp, out)
    if args.out:
        for p in report.write_all(comp, Path(args.out), force=True):
            print(f"wrote {p}")
    if args.json:
        report.write_json(comp, Path(args.json))
        print(f"wrote {args.json}")
    return 0
