"""Train one model in several frameworks from the same data, initial weights, batch order and
optimizer; print a table of per-framework results and differences against a reference
framework, and write a JSON report, two plots and a Markdown summary.

Your own models instead of the zoo's: --model FRAMEWORK=PATH.py:NAME once per framework
(e.g. --model keras=my_models.py:build --model torch=my_models.py:Net), where NAME is a
function or class returning the model (for tf1: the function that builds the forward graph
from its input placeholder). The file is imported and run as your own trusted code, as
`python PATH.py` would run it: pass only files you trust (docs/own-models.md)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np

from zoo.commands.data import add_data_arguments, load_from_args
from zoo.compare import RECORD_BUDGET_MB
from zoo.errors import ConfigError
from zoo.frameworks import DEFAULT_COMPARE, FRAMEWORKS
from zoo.optimizers import OPTIMIZERS
from zoo.specs import MODELS, ModelSpec


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that trains."""
    p.add_argument("model", metavar="MODEL", help=f"model: {', '.join(MODELS)}")
    p.add_argument("--dataset", metavar="NAME", help="dataset name (see `zoo data --list`)")
    add_data_arguments(p)
    p.add_argument("--optimizer", default=None, metavar="NAME",
                   help=f"optimizer: {', '.join(OPTIMIZERS)} (default sgd; "
                        + ", ".join(f"{m} {a.default_optimizer}" for m, a in MODELS.items()
                                    if a.default_optimizer != "sgd") + ")")
    # the defaults (zoo.models): SGD on standardised features, batch 32, large enough that 20
    # epochs of the bundled datasets reach the tests' accuracy floors, small enough not to diverge
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: " + ", ".join(f"{m} {a.default_lr:g}" for m, a
                                                             in MODELS.items()) + ")")
    p.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty 0.5*l2*|kernel|^2 (default 0)")
    p.add_argument("--native-dropout", action="store_true",
                   help="let every framework draw its own dropout masks (default: shared masks)")
    p.add_argument("--init", metavar="WEIGHTS", default=None,
                   help="start from these weights (any file the zoo reads: *.npz, *.pt, "
                        "*.keras, *.ckpt) instead of the zoo's initial weights for --seed")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="data-parallel training on N workers for "
                        f"{' and '.join(n for n, f in FRAMEWORKS.items() if f.data_parallel)}, "
                        "equal to one process (docs/distributed.md; default 1)")


def _models(where) -> str:
    return ", ".join(m for m, a in MODELS.items() if where(a))


def build_specs(args: argparse.Namespace):
    """(dataset, model spec, train spec) from parsed arguments, with clear errors."""
    from zoo.optimizers import OptimizerSpec
    from zoo.specs import TrainSpec, model_spec_for

    if args.dataset is None and args.csv is None and args.npz is None:
        raise ConfigError("name a dataset with --dataset NAME, or pass --csv PATH --target "
                          "COLUMN or --npz PATH.")
    if args.model not in MODELS:  # fail before loading any data
        model_spec_for(args.model, 1, 1)
    arch = MODELS[args.model]
    lr = args.lr if args.lr is not None else arch.default_lr
    opt = OptimizerSpec(args.optimizer or arch.default_optimizer, lr=lr)
    train = TrainSpec(opt, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      dtype=args.dtype, l2=args.l2,
                      dropout_mode="native" if args.native_dropout else "shared")
    ds = load_from_args(args, args.dataset)
    task = arch.task
    if task == "regression" and ds.task != "regression":
        raise ConfigError(f"model {args.model!r} is a regression model but dataset {ds.name!r} "
                          f"is a {ds.task} task; use "
                          f"{_models(lambda a: a.task == 'classification')} or "
                          f"{_models(lambda a: a.task == 'binary')}.")
    if task != "regression" and ds.task == "regression":
        from zoo.data import not_labels_reason

        reason = not_labels_reason(np.concatenate([ds.y_train.ravel(), ds.y_test.ravel()]))
        why = f" (its targets hold {reason}, not class labels 0..C-1)" if reason else ""
        raise ConfigError(f"model {args.model!r} is a classifier but dataset {ds.name!r} is a "
                          f"regression task{why}; use the linear model, or encode the classes "
                          "as integers 0..C-1.")
    if task == "binary" and ds.task != "binary":
        raise ConfigError(f"model {args.model!r} needs a binary task but dataset {ds.name!r} "
                          f"has {ds.n_classes} classes; use softmax (C classes) or a binary "
                          "dataset such as breast_cancer.")
    return ds, spec_for_dataset(args.model, ds), train


def spec_for_dataset(model: str, ds, *, dropout: float | None = None) -> ModelSpec:
    """The zoo's spec of `model` for the dataset `ds` (a `zoo.data.Dataset`): its sizes, and
    its image shape for image models. An image model on flat data, or on images it cannot
    take (a kernel larger than what reaches it), is a ConfigError naming the size it needs
    and the models that fit."""
    from zoo.data import flat_data_message, shape_text
    from zoo.layers import resolve
    from zoo.specs import minimum_size, model_spec_for

    arch = MODELS[model]
    # a C-class model on a two-class (binary) dataset still has one output per class
    n_out = 1 if arch.task in ("binary", "regression") else int(ds.n_classes or ds.n_outputs)
    if (arch.image or arch.sequence == "rows") and ds.image_shape is None:
        raise ConfigError(flat_data_message(model, ds))
    if arch.sequence == "tokens" and not ds.vocab:
        raise ConfigError(f"model {model!r} reads token ids but dataset {ds.name!r} has none; "
                          "use a token dataset (tokens).")
    if arch.sequence != "tokens" and ds.vocab:
        raise ConfigError(f"dataset {ds.name!r} holds token ids: use a model with an Embedding "
                          "(embedding_gru).")
    spec = model_spec_for(model, ds.n_features, n_out, dropout=dropout,
                          input_shape=ds.image_shape, vocab=ds.vocab)
    if arch.sequence:
        return spec
    try:
        resolve(spec.layers, spec.input_shape)
    except ConfigError as exc:
        h, w = spec.input_shape[:2]
        need = minimum_size(spec)
        fit = [m for m, a in MODELS.items() if a.image and m != model
               and _fits(m, spec.input_shape, n_out)]
        other = f" or a model that fits {h}x{w} images: {', '.join(fit)}" if fit else ""
        why = str(exc).split(";")[0]
        size = f"images of at least {need}x{need}" if need else "larger images"
        raise ConfigError(f"model {model!r} needs {size} but dataset {ds.name!r} has "
                          f"{shape_text(spec.input_shape)} images ({why}); use larger "
                          f"images{other}.") from None
    return spec


def _fits(model: str, shape: tuple[int, ...], n_out: int) -> bool:
    from zoo.specs import model_spec_for

    try:
        return bool(model_spec_for(model, int(np.prod(shape)), n_out, input_shape=shape).resolved)
    except ConfigError:
        return False


def load_init(path: str, spec: ModelSpec, ds_name: str, dtype: str,
              alongside: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The weights of `--init PATH` (any format the zoo reads) for the run's `spec`, in
    `dtype`. Weights of another model, or of the same model for other inputs (a channel
    count, an image size, a number of features or classes), are a ConfigError naming both.
    `alongside`: frameworks that will share this process (imported in a safe order)."""
    from zoo import frameworks, interchange
    from zoo.data import shape_text

    fmt = interchange.stored_format(path)
    interchange.check_exists(fmt, path)
    frameworks.import_in_order([*alongside, frameworks.for_format(fmt)])
    got, weights = interchange.load(path)
    if got.name != spec.name:
        raise ConfigError(f"--init {path!r} holds weights of model {got.name!r}, not "
                          f"{spec.name!r}; pass weights saved for {spec.name} (zoo train "
                          f"{spec.name} ... --save PATH) or leave --init out.")
    want, have = spec.weight_shapes(), got.weight_shapes()
    if want == have:
        return {k: np.asarray(weights[k], dtype) for k in want}
    c_got, c_want = got.input_shape[-1], spec.input_shape[-1]
    if len(spec.input_shape) == 3 and len(got.input_shape) == 3 and c_got != c_want:
        raise ConfigError(f"--init {path!r} holds a {got.name} for {c_got}-channel images but "
                          f"dataset {ds_name!r} has {c_want}-channel images; pass weights "
                          f"trained on {c_want}-channel images or leave --init out.")
    name = next((k for k in want if have.get(k) != want[k]), None) or next(iter(have))
    shown = have.get(name)
    raise ConfigError(f"--init {path!r} holds a {got.name} for input {shape_text(got.input_shape)} "
                      f"and {got.n_outputs} outputs but dataset {ds_name!r} needs input "
                      f"{shape_text(spec.input_shape)} and {spec.n_outputs} outputs ({name} is "
                      f"{shown}, the model needs {want.get(name)}); pass weights saved for this "
                      "data or leave --init out.")


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
    for action in p._actions:  # MODEL is optional here: --model names your own instead
        if action.dest == "model":
            action.nargs, action.default = "?", None
            action.help += " (or --model FRAMEWORK=PATH.py:NAME for your own)"
    p.add_argument("--model", dest="own", action="append", default=[],
                   metavar="FRAMEWORK=PATH.py:NAME",
                   help="compare your own model instead of the zoo's: give one per framework "
                        "(keras, tf1, torch); NAME is a function or class in PATH.py returning "
                        "the model (tf1: the function building the graph from its input). "
                        "PATH.py is imported and run as your own trusted code: pass only "
                        "files you trust (docs/own-models.md)")
    p.add_argument("--frameworks", default=None,
                   help="comma-separated: " + "; ".join(f"{n} ({fw.description})" for n, fw in
                                                        FRAMEWORKS.items())
                        + f". Default {','.join(DEFAULT_COMPARE)}")
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

    if args.own:
        return run_own(args)
    if args.model is None:
        raise ConfigError("name a model (zoo list shows them), or your own with --model "
                          "FRAMEWORK=PATH.py:NAME once per framework.")
    frameworks = cmp.parse_frameworks(args.frameworks or ",".join(DEFAULT_COMPARE))
    record = _record_every_arg(args.record_every)
    ds, model_spec, train_spec = build_specs(args)
    init = None
    if args.init:
        init = load_init(args.init, model_spec, ds.name, train_spec.dtype)
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

        preloader = threading.Thread(target=report.preload, daemon=True)
        preload_lock = threading.Lock()   # events arrive on each worker's reader thread

        def on_event(fw: str, ev: dict) -> None:
            if ev.get("event") == "start":
                prog.update(tasks[fw], total=ev["total_steps"])
            elif ev.get("event") == "progress":   # one event may cover several steps
                prog.update(tasks[fw], advance=ev.get("steps", 1), loss=f"{ev['loss']:.4f}")
            elif ev.get("event") == "done" and args.out:
                # a core is free once a worker is done: import the plots' matplotlib there
                # while the others train, not after them
                with preload_lock:
                    if preloader.ident is None:
                        preloader.start()

        comp = cmp.compare(model_spec, train_spec, ds, frameworks=frameworks, init=init,
                           reference=args.reference, on_event=on_event,
                           workers=args.workers, record_weights=record)
    if preloader.ident is not None:
        preloader.join()
    comp.notes.extend(ds.label_notes())  # class names -> ids, empty classes (zoo.data)
    if args.diagnose:
        cmp.diagnose_comparison(comp, ds)
    else:
        parted = [f"{fw} at step {r.first_divergent_step}" for fw, r in comp.results.items()
                  if r.first_divergent_step is not None]
        if parted:
            comp.notes.append(f"{', '.join(parted)} left the reference beyond the tolerance; "
                              "--diagnose names the first quantity that differs and tells "
                              "rounding (drift, a ReLU kink) from a different computation.")
    return _show_and_write(comp, args)


def run_own(args: argparse.Namespace) -> int:
    """`zoo compare --model FW=PATH.py:NAME ...`: the user's own models (`zoo.own`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zoo import report
    from zoo.own import compare_models, load_user_model

    if args.model is not None:
        raise ConfigError(f"give either a zoo model ({args.model!r}) or your own with --model, "
                          "not both.")
    refused = [(flag, v) for flag, v, default in (
        ("--frameworks", args.frameworks, None), ("--init", args.init, None),
        ("--workers", args.workers, 1), ("--l2", args.l2, 0.0),
        ("--record-every", args.record_every, "auto")) if v != default]
    if refused:
        flag = refused[0][0]
        why = {"--frameworks": "the frameworks are the ones named by --model",
               "--init": "the reference model's own initial weights are copied into the others",
               "--workers": "your own models train in one process",
               "--l2": "put the penalty in your models (kernel_regularizer, weight_decay)",
               "--record-every": "every step is recorded"}[flag]
        raise ConfigError(f"{flag} does not apply to your own models: {why}.")
    if args.dataset is None and args.csv is None and args.npz is None:
        raise ConfigError("name a dataset with --dataset NAME, or pass --csv PATH --target "
                          "COLUMN or --npz PATH.")
    models: dict = {}
    for text in args.own:
        fw, model = load_user_model(text)
        if fw in models:
            raise ConfigError(f"--model names {fw} twice; give one model per framework.")
        models[fw] = model
    if len(models) < 2:
        raise ConfigError("compare at least two of your models: give --model once per "
                          "framework, e.g. --model keras=m.py:build --model torch=m.py:Net.")
    ds = load_from_args(args, args.dataset)
    targets: list[Path] = []
    if args.out is None and args.json is None:
        import time

        name = args.dataset or Path(args.csv or args.npz).stem
        args.out = str(Path("runs") / f"own-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.out:
        targets += [Path(args.out) / f for f in report.REPORT_FILES]
    if args.json:
        targets.append(Path(args.json))
    report.check_writable(targets, args.force)
    console = Console(stderr=True)
    steps = -(-len(ds.X_train) // args.batch_size) * args.epochs
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                  console=console, transient=False, disable=not console.is_terminal) as prog:
        tasks = {fw: prog.add_task(fw, total=steps, loss="-") for fw in models}

        def progress(fw: str, epoch: int, step: int, loss: float) -> None:
            prog.update(tasks[fw], advance=1, loss=f"{loss:.4f}")

        comp = compare_models(models, ds, optimizer=args.optimizer or "sgd",
                              lr=args.lr if args.lr is not None else 0.01, epochs=args.epochs,
                              batch_size=args.batch_size, dtype=args.dtype, seed=args.seed,
                              reference=args.reference,
                              dropout="native" if args.native_dropout else "off",
                              progress=progress)
    comp.notes.extend(ds.label_notes())
    return _show_and_write(comp, args)


def _show_and_write(comp, args: argparse.Namespace) -> int:
    """Print the table (150 columns when stdout is not a terminal) and write the report files
    that --out / --json name (checked writable before training)."""
    from rich.console import Console

    from zoo import report

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
