"""ONNX interchange: every zoo model as an ONNX graph that ONNX Runtime runs, and back.

Export (`export`, `zoo convert WEIGHTS model.onnx`): whatever format the weights come from
(.keras, .pt, .ckpt or the canonical .npz), the model is built from its torch translation
(`torch_models.model.build(spec, weights)`, eval mode: no dropout, BatchNorm on its moving
statistics) and exported with `torch.onnx.export(dynamo=True)` (the `torch.export`-based
exporter; it translates torch's ops with onnxscript's function library, so `nn.LSTM`/`nn.GRU`
become ONNX `LSTM`/`GRU` nodes, the reset_after=False GRU's step loop is unrolled, BatchNorm and
LayerNorm are `BatchNormalization`/`LayerNormalization`). The graph:

- input `inputs`: float32 (batch, *spec.input_shape), the canonical layout of every numpy array
  in the zoo (images NHWC: the NHWC -> NCHW permute of `Net.forward` is a `Transpose` inside
  the graph; token ids as floats, cast to int64 inside it), batch axis dynamic;
- output `predictions`: what `zoo predict` returns (`torch_models.model.outputs`: softmax
  probabilities, sigmoid activations or raw values), so ONNX Runtime's predictions are the
  zoo's;
- opset `OPSET` (18, default domain only): the opset onnxscript's torch function library is
  written in, so the graph needs no version conversion; LayerNormalization needs 17. ONNX
  Runtime has run opset 18 since 1.14;
- `metadata_props`: `zoo.model` (the `ModelSpec.to_dict()` JSON), `zoo.format_version`
  (`FORMAT_VERSION`: how the zoo lays out its ONNX files), `zoo.version`, `zoo.output` and
  `zoo.weight_names` ("torch": the initializers are named as the torch `state_dict`).

The weights are the graph's initializers under their torch `state_dict` names
(`dense_0.weight`, `conv2d_1.bias`, `batch_norm_0.running_mean`, `lstm_0.weight_ih_l0`, ...), in
torch's layouts: the exporter's graph optimisation is off (`optimize=False`), since it folds
BatchNorm into the convolutions and transposes into new constants, which would lose tensors.
An export is checked before it is written: every canonical tensor must come back out of the
initializers bit for bit, and ONNX Runtime's predictions of a probe batch must equal torch's
(`CHECK_TOL`); otherwise nothing is written. A float64 model is exported in float32 (what the
graph computes in). Beside the file sits the usual sidecar `<path>.json` (`zoo.interchange`),
format "onnx"; reading needs only the file (its metadata holds the spec).

Import (`load`, `zoo convert model.onnx OUT.{keras,pt,ckpt,npz}`): ONNX files the zoo wrote
only: the spec from the metadata, the canonical weights from the initializers through the torch
weight tables (`zoo.layers.from_native`, no torch needed). A file without the zoo's metadata (a
foreign graph) or one that is not an ONNX model is refused with one line naming the problem.
Predict (`predict`, `zoo predict model.onnx --dataset D`): ONNX Runtime, CPUExecutionProvider.

Nothing here imports onnx, onnxruntime or torch at module level.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np

from zoo import __version__
from zoo import interchange as ic
from zoo.errors import ConfigError, DataError, DataNotFoundError, ZooError
from zoo.layers import from_native, tensor_specs
from zoo.specs import ModelSpec, check_inputs

__all__ = ["CHECK_TOL", "FORMAT", "FORMAT_VERSION", "INPUT", "META_MODEL", "OPSET", "OUTPUT",
           "SUFFIX", "ZOO_OPS", "check_exists", "convert", "export", "is_onnx", "load",
           "predict", "read_spec"]

FORMAT = "onnx"
SUFFIX = ic.ONNX_SUFFIX
#: the ONNX opset of every export (default domain)
OPSET = 18
#: the version of the zoo's ONNX layout (metadata keys, names of the graph's input, output
#: and initializers); a file of a later version is refused
FORMAT_VERSION = 1
INPUT, OUTPUT = "inputs", "predictions"
META_MODEL, META_FORMAT_VERSION = "zoo.model", "zoo.format_version"
META_VERSION, META_OUTPUT, META_NAMES = "zoo.version", "zoo.output", "zoo.weight_names"
#: the framework whose weight-table names and layouts the initializers have
NAMES_OF = "torch"
#: ONNX Runtime against torch on the export's probe batch, relative to max(1, |prediction|)
CHECK_TOL = 1e-5
#: the operator types the zoo's exports consist of (those of every model, of the layers no
#: model uses yet, e.g. AveragePool, Tanh, and of the reset_after=False GRU's unrolled loop);
#: a foreign graph's first other one is named when it is refused
ZOO_OPS = frozenset({
    "AveragePool", "BatchNormalization", "Cast", "CastLike", "Concat", "Constant",
    "ConstantOfShape", "Conv", "Expand", "Flatten", "GRU", "Gather", "Gemm", "Identity",
    "LSTM", "LayerNormalization", "MatMul", "MaxPool", "Add", "Sub", "Mul", "Div", "Neg",
    "Pad", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze",
    "Tanh", "Transpose", "Unsqueeze",
})


def is_onnx(path: str | os.PathLike, to: str | None = None) -> bool:
    """Whether `path` is (or, with `to`, is to be written as) an ONNX file: `to == "onnx"`,
    the suffix .onnx, or a sidecar saying so (a file written with `--to onnx` under another
    name)."""
    if to is not None:
        return to == FORMAT
    if Path(path).suffix.lower() == SUFFIX:
        return True
    side = ic.sidecar_path(path)
    if Path(path).suffix.lower() not in ic.FORMATS and side.is_file():
        try:
            return json.loads(side.read_text()).get("format") == FORMAT
        except (ValueError, AttributeError, OSError):
            return False
    return False


# ----------------------------------------------------------------------------------- export
def export(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
           force: bool = False) -> Path:
    """Write `model_spec` with canonical `weights` as an ONNX model to `path` (atomically),
    checked in ONNX Runtime first, and its sidecar. Returns the path."""
    path = Path(path)
    ic.check_target(FORMAT, path, force)
    ic.check_weights(model_spec, weights, str(path))
    weights = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    proto, net = _export_proto(model_spec, weights)
    _check_export(proto, net, model_spec, weights, path)
    with ic.temp_path(path, suffix=SUFFIX) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        ic.replace_atomically(tmp, path)
    ic.write_sidecar(FORMAT, model_spec, weights, path)
    return path


class _Quiet(contextlib.ExitStack):
    """No warnings, log lines or progress output from the exporter (its deprecation notes
    and "torchvision is not installed" would otherwise reach stderr, or pytest's errors)."""

    def __enter__(self) -> _Quiet:
        super().__enter__()
        self.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        self.enter_context(contextlib.redirect_stdout(io.StringIO()))
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            log = logging.getLogger(name)
            self.callback(log.setLevel, log.level)
            log.setLevel(logging.ERROR)
        return self


def _export_proto(spec: ModelSpec, weights: dict[str, np.ndarray]):
    """(the ONNX ModelProto with the zoo's metadata, the torch module it was exported from)."""
    import torch

    from torch_models import model as M

    if tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
        raise ConfigError(f"exporting to ONNX needs torch >= 2.6 (its torch.export-based "
                          f"exporter with optimize=False); this is torch {torch.__version__}.")
    net = M.build(spec, weights, "float32").eval()  # eval: no dropout, moving statistics
    module = _predictions_module()(net).eval()
    example = torch.zeros(2, *spec.input_shape)  # 2: a batch of 1 would be specialised
    try:
        with _Quiet():
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, opset_version=OPSET,
                input_names=[INPUT], output_names=[OUTPUT], optimize=False,
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                external_data=False, verbose=False)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"exporting to ONNX needs the package {exc.name!r} "
                          "(pip install onnx onnxscript onnxruntime; the zoo's dependencies "
                          "include them).") from None
    proto = program.model_proto
    proto.doc_string = (f"zoo {spec.name}: {spec.output} predictions of {INPUT} (batch, "
                        f"{', '.join(map(str, spec.input_shape))}); weights are the "
                        "initializers under their torch state_dict names")
    meta = {META_MODEL: json.dumps(spec.to_dict(), sort_keys=True),
            META_FORMAT_VERSION: str(FORMAT_VERSION), META_VERSION: __version__,
            META_OUTPUT: spec.output, META_NAMES: NAMES_OF}
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto, module


def _predictions_module():
    from torch import nn

    from torch_models import model as M

    class Predictions(nn.Module):
        """`Net` followed by `outputs` (what predict returns). The net's children are
        registered here directly, not under a `net.` prefix, so that the exported
        initializers keep the `state_dict` names (`dense_0.weight`, ...)."""

        def __init__(self, net: M.Net) -> None:
            super().__init__()
            for name, child in net.named_children():
                self.add_module(name, child)
            object.__setattr__(self, "_net", net)  # not a submodule: no second name

        def forward(self, x):
            return M.outputs(self._net.spec, self._net(x))

    return Predictions


def _probe(spec: ModelSpec, n: int = 3) -> np.ndarray:
    """A deterministic probe batch in the model's input layout (valid ids for token models)."""
    rng = np.random.default_rng(0)
    if spec.vocab:
        return rng.integers(0, spec.vocab, (n, *spec.input_shape)).astype(np.float32)
    return rng.standard_normal((n, *spec.input_shape)).astype(np.float32)


def _check_export(proto, module, spec: ModelSpec, weights: dict[str, np.ndarray],
                  path: Path) -> None:
    """Every canonical tensor comes back out of the initializers bit for bit, and ONNX
    Runtime's predictions of a probe batch equal torch's; else a DataError and no file."""
    import torch

    back = _weights_of(proto, spec, str(path))
    changed = [k for k in weights if not np.array_equal(back[k], weights[k])]
    if changed:
        raise DataError(f"the ONNX export of {spec.name} does not hold {changed} as they were "
                        f"given (torch {torch.__version__}); {str(path)!r} was not written.")
    X = _probe(spec)
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    got = _run(proto.SerializeToString(), X)
    diff = float(np.max(np.abs(got.astype(np.float64) - want)))
    tol = CHECK_TOL * max(1.0, float(np.max(np.abs(want))))
    if not diff <= tol:
        raise DataError(f"ONNX Runtime's predictions of the {spec.name} export differ from "
                        f"torch's by {diff:.3g} (> {tol:.3g}; torch {torch.__version__}); "
                        f"{str(path)!r} was not written.")


# ----------------------------------------------------------------------------------- import
def check_exists(path: str | os.PathLike) -> None:
    if not Path(path).is_file():
        raise DataNotFoundError(f"ONNX file {str(path)!r} not found; check the path (write one "
                                "with `zoo convert WEIGHTS model.onnx`).")


def _parse(path: str | os.PathLike):
    """The ModelProto of a zoo export at `path`, with its spec: a missing file is a
    DataNotFoundError, anything that is not an ONNX model or not the zoo's a DataError."""
    import onnx
    from google.protobuf.message import DecodeError

    check_exists(path)
    data = Path(path).read_bytes()
    if not data:
        raise DataError(f"{str(path)!r} is empty, not an ONNX model; export one with "
                        "`zoo convert WEIGHTS model.onnx`.")
    try:
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{str(path)!r} is not a valid ONNX model ({first[:160]}); it is "
                        "corrupt or truncated: export it again with `zoo convert WEIGHTS "
                        "model.onnx`.") from None
    return proto, _spec_of(proto, str(path))


def _spec_of(proto, where: str) -> ModelSpec:
    meta = {e.key: e.value for e in proto.metadata_props}
    if META_MODEL not in meta:
        foreign = next((n.op_type for n in _nodes(proto.graph) if n.domain not in ("", "ai.onnx")
                        or n.op_type not in ZOO_OPS), None)
        what = (f"its first operator the zoo cannot place is {foreign!r}" if foreign else
                "its operators are all ones the zoo exports, but without the metadata its "
                "layers and their order are unknown")
        raise DataError(f"{where!r} is an ONNX model without zoo metadata ({META_MODEL!r} in "
                        f"metadata_props): the zoo reads back only the ONNX files it wrote; "
                        f"{what}.")
    try:
        version = int(meta.get(META_FORMAT_VERSION, "0"))
        spec = ModelSpec.from_dict(json.loads(meta[META_MODEL]))
    except (ValueError, TypeError, KeyError, AttributeError, ZooError) as exc:
        raise DataError(f"{where!r} has corrupt zoo metadata {META_MODEL!r} ({exc}); export "
                        "it again with `zoo convert WEIGHTS model.onnx`.") from None
    if version > FORMAT_VERSION or version < 1:
        raise DataError(f"{where!r} is a zoo ONNX file of format version {version}; this zoo "
                        f"({__version__}) reads version {FORMAT_VERSION}: convert it with the "
                        "zoo that wrote it.")
    if meta.get(META_NAMES, NAMES_OF) != NAMES_OF:
        raise DataError(f"{where!r} names its weights as {meta[META_NAMES]!r}; this zoo reads "
                        f"{NAMES_OF!r} names only.")
    return spec


def _nodes(graph):
    """Every node of `graph` and of its subgraphs (If/Loop/Scan bodies), in order."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _nodes(g)


def _weights_of(proto, spec: ModelSpec, where: str) -> dict[str, np.ndarray]:
    """The canonical weights of `spec` from the initializers (torch names and layouts, through
    the weight tables); a tensor that is missing, not used by the graph, stored outside the
    file or misshapen is a DataError naming it."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    used = {i for n in _nodes(proto.graph) for i in n.input}
    specs = tensor_specs(spec.resolved)
    need = {n: t.name for t in specs for n in t.native_names(NAMES_OF)}
    missing = [f"{canon} ({name})" for name, canon in need.items() if name not in inits]
    unused = [name for name in need if name in inits and name not in used]
    if missing or unused:
        raise DataError(f"{where!r} does not hold every weight of its {spec.name} model: "
                        f"missing initializers {missing or 'none'}, unused by the graph "
                        f"{unused or 'none'}; export it again with `zoo convert WEIGHTS "
                        "model.onnx` (with the exporter's constant folding off).")
    native: dict[str, np.ndarray] = {}
    for name in need:
        t = inits[name]
        if t.data_location == TensorProto.EXTERNAL:
            raise DataError(f"{where!r} keeps initializer {name!r} in an external file; the "
                            "zoo reads self-contained ONNX files only.")
        native[name] = np.array(numpy_helper.to_array(t))  # a writable copy
    try:
        return from_native(native, spec.resolved, NAMES_OF)
    except ConfigError as exc:
        raise DataError(f"{where!r}: {exc}") from None


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The model spec recorded in a zoo ONNX file's metadata."""
    return _parse(path)[1]


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical float32 weights) of an ONNX file the zoo wrote."""
    proto, spec = _parse(path)
    weights = _weights_of(proto, spec, str(path))
    ic.check_weights(spec, weights, str(path))
    return spec, weights


# ---------------------------------------------------------------------------------- predict
def _run(model: bytes, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {INPUT: np.ascontiguousarray(X, np.float32)})[0]
    except Exception as exc:  # onnxruntime's own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"ONNX Runtime could not run the model ({first[:200]}).") from None


def predict(path: str | os.PathLike, X: np.ndarray) -> tuple[ModelSpec, np.ndarray]:
    """(model spec, predictions) of the zoo ONNX file at `path` for canonical inputs `X`
    (N, *spec.input_shape), computed by ONNX Runtime on the CPU: the same quantities as every
    framework's `predict` (probabilities, sigmoid activations or values), in float32."""
    proto, spec = _parse(path)
    check_inputs(spec, X, what=f"ONNX model {str(path)!r}")
    return spec, _run(proto.SerializeToString(), np.asarray(X))


# ---------------------------------------------------------------------------------- convert
def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str | None = None,
            force: bool = False) -> tuple[ModelSpec, dict[str, np.ndarray], str]:
    """`zoo.interchange.convert` with ONNX on either side: any weights file the zoo reads ->
    an ONNX export (`dst` named *.onnx or `to="onnx"`), or a zoo ONNX file -> any format of
    `zoo.interchange`. Returns (model spec, weights, target format)."""
    from zoo import frameworks

    to_onnx, from_onnx = is_onnx(dst, to), is_onnx(src)
    if not (to_onnx or from_onnx):
        return ic.convert(src, dst, to=to, force=force)
    if to_onnx:
        known = ic.FORMATS.get(Path(dst).suffix.lower())
        if known is not None:
            raise ConfigError(f"{str(dst)!r} has the suffix of a {known} file but the target "
                              f"format is onnx; name it *{SUFFIX} or drop --to.")
        dst_fmt = FORMAT
    else:
        if Path(dst).suffix.lower() == SUFFIX and to is not None:
            raise ConfigError(f"{str(dst)!r} has the suffix of an ONNX file but the target "
                              f"format is {to}; name it differently or drop --to.")
        dst_fmt = ic.format_of(dst, to)
    if from_onnx:
        check_exists(src)
    else:
        src_fmt = ic.stored_format(src)
        ic.check_exists(src_fmt, src)
    ic.check_target(dst_fmt, dst, force)  # fail before loading anything
    if from_onnx:
        spec, weights = load(src)
    else:
        # torch (the exporter) before tensorflow (a .keras or .ckpt source)
        frameworks.import_in_order([frameworks.FRAMEWORKS["torch"],
                                    frameworks.for_format(src_fmt)])
        spec, weights = ic.load(src)
    if dst_fmt == FORMAT:
        export(spec, weights, dst, force=force)
    else:
        ic.save(dst_fmt, spec, weights, dst, force=force)
    return spec, weights, dst_fmt

