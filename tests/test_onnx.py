"""ONNX interchange (`zoo.onnx_io`): every zoo model exported from its torch translation and run
in ONNX Runtime equals torch's `predict` within 1e-6 (float32; scaled by the predictions'
magnitude above 1), with weights that are not the initial ones (shifted biases, gammas, betas
and moving statistics); exports of .keras and .ckpt files of every model equal Keras's and
TF1's own predictions; the weights come
back out of an export bit for bit, and a .pt -> .onnx -> .keras -> .onnx round trip keeps the
predictions; corrupt and foreign ONNX files are refused with one line; the CLI
(`zoo convert ... model.onnx`, `zoo predict model.onnx`); importing the zoo imports no ONNX
package. Run with `-s` to see the measured differences."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from cli_run import one_error_line, zoo
from helpers import load, model_inputs, shifted_weights, spec_for
from onnx import TensorProto, helper

from torch_models import train as T
from zoo import frameworks as F
from zoo import interchange as ic
from zoo import onnx_io
from zoo.errors import ConfigError, DataError, DataNotFoundError
from zoo.layers import GRU, Dense, Dropout
from zoo.models import ARCHITECTURES, Architecture
from zoo.specs import ModelSpec

#: ONNX Runtime against a framework's predictions, float32 (relative above magnitude 1)
TOL = 1e-6
#: the small dataset each model is checked on
DATA = {"softmax": "iris", "svm": "iris", "linear": "icecream", "logistic": "breast_cancer",
        "mlp": "digits", "cnn": "digits", "cnn_bn": "digits", "mlp_ln": "digits",
        "lenet": "digits28", "nielsen": "digits", "lstm": "digits", "gru": "digits",
        "embedding_gru": "tokens"}


def _case(model: str):
    """(spec, weights, test inputs) of `model` on its small dataset."""
    ds = load(DATA[model])
    spec = spec_for(model, ds)
    return spec, shifted_weights(spec), model_inputs(ds.inputs(spec, "test"), spec)


def _rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want|, divided by max(1, max |want|)."""
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    return diff / max(1.0, float(np.max(np.abs(want))))


def _same_weights(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_every_model_has_a_dataset_here():
    assert set(DATA) == set(ARCHITECTURES)


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_onnx_runtime_equals_torch(tmp_path, model):
    """.pt -> .onnx: ONNX Runtime's predictions equal torch's `predict`; the spec and every
    weight come back out of the file exactly; the graph is what the docs say."""
    spec, w, X = _case(model)
    pt = ic.save("torch", spec, w, tmp_path / "w.pt")
    path = tmp_path / "m.onnx"
    got_spec, _, fmt = onnx_io.convert(pt, path)
    assert fmt == "onnx" and got_spec == spec
    spec2, pred = onnx_io.predict(path, X)
    want = T.predict(spec, w, X)
    diff = _rel_diff(pred, want)
    print(f"onnx {model} on {DATA[model]}: ONNX Runtime vs torch {diff:.3g}")
    assert pred.dtype == np.float32 and pred.shape == want.shape and diff <= TOL
    spec3, w3 = onnx_io.load(path)
    assert spec2 == spec3 == spec and _same_weights(w3, w)
    proto = onnx.load(str(path))
    meta = {e.key: e.value for e in proto.metadata_props}
    assert ModelSpec.from_dict(json.loads(meta["zoo.model"])) == spec
    assert meta["zoo.format_version"] == str(onnx_io.FORMAT_VERSION)
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] \
        == [("", onnx_io.OPSET)]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, out.name, dims) == ("inputs", "predictions", ["batch", *spec.input_shape])
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert {n.op_type for n in proto.graph.node} <= onnx_io.ZOO_OPS
    assert json.loads(ic.sidecar_path(path).read_text())["format"] == "onnx"
    _, one = onnx_io.predict(path, X[:1])  # the batch axis is dynamic
    assert _rel_diff(one, want[:1]) <= TOL


@pytest.mark.parametrize("fmt,model", [(fmt, model) for fmt in ("keras", "tf1")
                                       for model in ARCHITECTURES])
def test_export_of_each_framework_format_equals_its_predict(tmp_path, fmt, model):
    """.keras / .ckpt -> .onnx: ONNX Runtime equals the writing framework's own `predict` of
    the file it was exported from."""
    spec, w, X = _case(model)
    src = ic.save(fmt, spec, w, tmp_path / f"w{F.for_format(fmt).suffix}")
    onnx_io.convert(src, tmp_path / "m.onnx")
    _, pred = onnx_io.predict(tmp_path / "m.onnx", X)
    want = F.for_format(fmt).predict(*ic.load(src), X)
    diff = _rel_diff(pred, want)
    print(f"onnx {model} from {fmt}: ONNX Runtime vs {fmt} {diff:.3g}")
    assert diff <= TOL


def test_round_trip_pt_onnx_keras_onnx(tmp_path):
    """.pt -> .onnx -> .keras -> .onnx: the weights are unchanged bit for bit, both exports
    predict the same, and so does Keras on the .keras file in between."""
    spec, w, X = _case("cnn_bn")
    pt = ic.save("torch", spec, w, tmp_path / "w.pt")
    onnx_io.convert(pt, tmp_path / "a.onnx")
    onnx_io.convert(tmp_path / "a.onnx", tmp_path / "b.keras")
    onnx_io.convert(tmp_path / "b.keras", tmp_path / "c.onnx")
    assert _same_weights(ic.load(tmp_path / "b.keras")[1], w)
    assert _same_weights(onnx_io.load(tmp_path / "c.onnx")[1], w)
    first = onnx_io.predict(tmp_path / "a.onnx", X)[1]
    last = onnx_io.predict(tmp_path / "c.onnx", X)[1]
    keras_pred = F.get("keras").predict(*ic.load(tmp_path / "b.keras"), X)
    print(f"onnx round trip: {_rel_diff(last, first):.3g}, Keras {_rel_diff(last, keras_pred):.3g}")
    assert _rel_diff(last, first) <= TOL and _rel_diff(last, keras_pred) <= TOL


def test_reset_before_gru_dropout_and_float64(tmp_path, monkeypatch):
    """The reset_after=False GRU (the zoo's own step loop, unrolled in the graph) stacked under
    a reset-after GRU, with a Dropout (gone in inference mode); float64 weights are exported in
    float32 and still predict what torch predicts in float64."""
    arch = Architecture("probe", "classification", "cross_entropy", "softmax", "test layers",
                        lambda spec: [GRU(5, return_sequences=True, reset_after=False),
                                      Dropout(0.5), GRU(4), Dense(3)], sequence="rows")
    monkeypatch.setitem(ARCHITECTURES, "probe", arch)
    spec = ModelSpec("probe", 24, 3, input_shape=(6, 4))
    X = np.random.default_rng(5).standard_normal((7, 6, 4))
    w = shifted_weights(spec, dtype="float64")
    onnx_io.export(spec, w, tmp_path / "p.onnx")
    _, pred = onnx_io.predict(tmp_path / "p.onnx", X)
    assert _rel_diff(pred, T.predict(spec, w, X)) <= TOL
    w32 = {k: v.astype(np.float32) for k, v in w.items()}
    assert _same_weights(onnx_io.load(tmp_path / "p.onnx")[1], w32)
    assert json.loads(ic.sidecar_path(tmp_path / "p.onnx").read_text())["dtype"] == "float32"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "p.onnx")).graph.node}
    assert "GRU" in ops and ops <= onnx_io.ZOO_OPS, sorted(ops - onnx_io.ZOO_OPS)


# --------------------------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def softmax_onnx(tmp_path_factory):
    spec, w, X = _case("softmax")
    path = tmp_path_factory.mktemp("onnx") / "softmax.onnx"
    onnx_io.export(spec, w, path)
    return path


def _foreign(path, op: str = "Einsum"):
    """A valid ONNX model that the zoo did not write (no metadata)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, (4, 3), np.ones(12, np.float32))
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation="ni,ij->nj") \
        if op == "Einsum" else helper.make_node("MatMul", ["x", "w"], ["y"])
    model = helper.make_model(helper.make_graph([node], "foreign", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def _edited(src, dst, edit):
    proto = onnx.load(str(src))
    edit(proto)
    onnx.save(proto, str(dst))
    return dst


def test_corrupt_and_foreign_files_are_refused(tmp_path, softmax_onnx):
    data = softmax_onnx.read_bytes()
    cases = {
        "empty.onnx": (b"", "is empty"),
        "noise.onnx": (np.random.default_rng(0).bytes(500), "not a valid ONNX model"),
        "truncated.onnx": (data[: len(data) // 2], "not a valid ONNX model"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        for call in (onnx_io.load, onnx_io.read_spec,
                     lambda p: onnx_io.predict(p, np.zeros((1, 4))),
                     lambda p: onnx_io.convert(p, tmp_path / "out.npz")):
            with pytest.raises(DataError, match=match):
                call(tmp_path / name)
    with pytest.raises(DataError, match=r"without zoo metadata.*cannot place is 'Einsum'"):
        onnx_io.load(_foreign(tmp_path / "einsum.onnx"))
    with pytest.raises(DataError, match="without zoo metadata.*all ones the zoo exports"):
        onnx_io.load(_foreign(tmp_path / "matmul.onnx", "MatMul"))
    assert not (tmp_path / "out.npz").exists()
    with pytest.raises(DataNotFoundError):
        onnx_io.load(tmp_path / "missing.onnx")


def test_missing_renamed_or_unused_weights_are_named(tmp_path, softmax_onnx):
    def rename(proto):  # an exporter that renamed the bias
        next(t for t in proto.graph.initializer if t.name == "dense_0.bias").name = "val_7"
        for node in proto.graph.node:
            node.input[:] = ["val_7" if i == "dense_0.bias" else i for i in node.input]

    with pytest.raises(DataError, match=r"missing initializers \['dense_0/bias \(dense_0.bias\)'\]"):
        onnx_io.load(_edited(softmax_onnx, tmp_path / "renamed.onnx", rename))

    def fold(proto):  # a folded copy used instead of the named tensor
        copy = onnx.TensorProto()
        copy.CopyFrom(next(t for t in proto.graph.initializer if t.name == "dense_0.weight"))
        copy.name = "folded"
        proto.graph.initializer.append(copy)
        for node in proto.graph.node:
            node.input[:] = ["folded" if i == "dense_0.weight" else i for i in node.input]

    with pytest.raises(DataError, match=r"unused by the graph \['dense_0.weight'\]"):
        onnx_io.load(_edited(softmax_onnx, tmp_path / "folded.onnx", fold))

    def newer(proto):
        next(e for e in proto.metadata_props if e.key == "zoo.format_version").value = "99"

    with pytest.raises(DataError, match="format version 99"):
        onnx_io.load(_edited(softmax_onnx, tmp_path / "newer.onnx", newer))


def test_targets_and_interchange_refusals(tmp_path, softmax_onnx):
    spec, w = onnx_io.load(softmax_onnx)
    with pytest.raises(ConfigError, match="already exists"):
        onnx_io.export(spec, w, softmax_onnx)
    with pytest.raises(ConfigError, match=r"name it \*\.onnx"):
        onnx_io.convert(softmax_onnx, tmp_path / "x.pt", to="onnx")
    with pytest.raises(ConfigError, match="is an ONNX file"):
        ic.load(softmax_onnx)  # zoo.interchange points at zoo.onnx_io
    with pytest.raises(ConfigError, match="is an ONNX file"):
        ic.format_of(tmp_path / "w.onnx")  # e.g. `zoo train --save w.onnx`
    with pytest.raises(ConfigError, match="samples of shape"):
        onnx_io.predict(softmax_onnx, np.zeros((2, 5), np.float32))
    onnx_io.convert(softmax_onnx, tmp_path / "w", to="npz")  # any format back, by --to
    assert _same_weights(ic.load(tmp_path / "w")[1], w)


# ----------------------------------------------------------------------------------- the CLI
def test_cli_convert_and_predict(tmp_path):
    spec, w, _ = _case("softmax")
    ic.save("torch", spec, w, tmp_path / "w.pt")
    r = zoo("convert", tmp_path / "w.pt", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    assert "opset 18" in r.stdout and r.stderr == ""
    for src, out in ((tmp_path / "m.onnx", "onnx.json"), (tmp_path / "w.pt", "pt.json")):
        r = zoo("predict", src, "--dataset", "iris", "--json", tmp_path / out)
        assert r.returncode == 0, r.stderr
    ort_doc, pt_doc = (json.loads((tmp_path / f).read_text()) for f in ("onnx.json", "pt.json"))
    assert ort_doc["format"] == "onnx" and ort_doc["model"] == "softmax"
    assert _rel_diff(ort_doc["predictions"], np.array(pt_doc["predictions"])) <= TOL
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 10)
    line = one_error_line(zoo("convert", tmp_path / "bad.onnx", tmp_path / "out.npz"))
    assert "not a valid ONNX model" in line
    line = one_error_line(zoo("predict", _foreign(tmp_path / "f.onnx"), "--dataset", "iris"))
    assert "without zoo metadata" in line and "'Einsum'" in line


def test_importing_the_zoo_imports_no_onnx_package():
    code = ("import sys, zoo, zoo.interchange, zoo.onnx_io, zoo.commands.convert, "
            "zoo.commands.predict, zoo.cli; zoo.cli.build_parser(); "
            "bad = [m for m in ('onnx', 'onnxruntime', 'onnxscript', 'torch', 'tensorflow') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
