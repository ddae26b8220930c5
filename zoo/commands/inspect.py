"""List a TF1 checkpoint's variables (name, shape, dtype) and the mapping `zoo convert` would use:
which canonical tensor of which zoo model each variable holds (TF1 layer code's names:
dense/kernel, conv2d_1/bias, batch_normalization/moving_mean, LayerNorm/gamma, and
rnn/lstm_cell/kernel, which holds an LSTM's input AND recurrent kernels, gates i, j, f, o,
its bias minus LSTMCell's forget_bias=1.0), what is skipped (optimizer slots such as
dense/kernel/Adam, beta1_power, global_step) and what cannot be placed. The model is the one
the names and shapes fit, or --model NAME. Reading needs TensorFlow's checkpoint reader only
(no legacy Keras). Exit code 0 when a model fits, 1 when none does (the variables it cannot
place are listed)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT",
                   help="a TF1 checkpoint prefix (model.ckpt, beside model.ckpt.index)")
    p.add_argument("--model", metavar="NAME", default=None,
                   help="map onto this zoo model (default: the one the names and shapes fit)")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")


def run(args: argparse.Namespace) -> int:
    from zoo import interchange

    if not interchange.reads_by_names(args.checkpoint) and args.model is None \
            and interchange.sidecar_path(args.checkpoint).is_file():
        return _zoo_checkpoint(args)
    spec = None
    if args.model is None and interchange.sidecar_path(args.checkpoint).is_file() \
            and interchange.reads_by_names(args.checkpoint):
        spec = interchange.read_sidecar(interchange.TF1_LAYERS, args.checkpoint)[0]
    m = interchange.map_checkpoint(interchange.checkpoint_arrays(args.checkpoint),
                                   model=args.model, spec=spec, path=args.checkpoint)
    holds = m.native_of()
    if args.json:
        print(json.dumps({
            "checkpoint": args.checkpoint,
            "model": m.spec.to_dict() if m.spec else None, "nearest": m.nearest,
            "variables": [{"name": n, "shape": list(shape), "dtype": dtype,
                           "canonical": holds.get(n, []), "skipped": n in m.skipped}
                          for n, (shape, dtype) in m.variables.items()],
            "mapping": [{"canonical": c, "shape": list(shape), "native": [m.scope + n
                                                                          for n in natives],
                         "layout": what} for c, shape, natives, what in m.rows],
            "unplaced": m.unplaced, "missing": m.missing, "also": m.also, "notes": m.notes},
            indent=2))
        return 0 if m.spec else 1
    width = max([len(n) for n in m.variables] + [8])
    print(f"{args.checkpoint}: {len(m.variables)} variables")
    print(f"  {'variable':<{width}}  {'shape':<14} {'dtype':<8} holds")
    for n, (shape, dtype) in m.variables.items():
        what = ("optimizer state (skipped)" if n in m.skipped
                else ", ".join(holds.get(n, [])) if n in holds and m.spec
                else "UNPLACED" if n in m.unplaced else "-")
        print(f"  {n:<{width}}  {str(list(shape)):<14} {dtype:<8} {what}")
    if m.spec is None:
        print(interchange.unplaced_message(m, args.model))
        return 1
    s = m.spec
    print(f"model {s.name}: input {tuple(s.input_shape)}, {s.n_outputs} outputs"
          + (f", hidden {s.hidden}" if s.hidden else ""))
    print("mapping (canonical <- checkpoint variable: layout):")
    for c, shape, natives, what in m.rows:
        print(f"  {c} {list(shape)} <- {', '.join(m.scope + n for n in natives)}: {what}")
    for note in m.notes:
        print(f"note: {note}")
    return 0


def _zoo_checkpoint(args: argparse.Namespace) -> int:
    """A checkpoint the zoo's tf1 framework wrote: its sidecar names the model, and its
    variables are the canonical tensors under their canonical names."""
    from zoo import interchange

    spec = interchange.read_sidecar("tf1", args.checkpoint)[0]
    arrays = interchange.checkpoint_arrays(args.checkpoint)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "model": spec.to_dict(),
                          "variables": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype),
                                         "canonical": [n]} for n, a in arrays.items()]},
                         indent=2))
        return 0
    print(f"{args.checkpoint}: {len(arrays)} variables of the zoo's tf1 framework (model "
          f"{spec.name}, from its sidecar): canonical names and layouts")
    for n, a in arrays.items():
        print(f"  {n}  {list(a.shape)}  {a.dtype}")
    return 0
