"""Weight interchange: native formats (.keras, .pt state_dict, TF1 .ckpt) and the canonical
.npz, conversion in every direction and round trips with equal predictions (dense models and
the convnet, whose torch layouts permute kernels), safe loading and bad files, no overwrite
without force, and the `zoo train --save/--init`, `zoo convert`, `zoo predict` commands."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import shifted_weights

from zoo import frameworks as F
from zoo import interchange as ic
from zoo.data import load as load_dataset
from zoo.errors import ConfigError, DataError, DataNotFoundError, ZooError
from zoo.specs import init_weights, model_spec_for

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ("keras", "torch", "tf1")
#: every format the zoo reads and writes: the native ones and the canonical .npz
FORMATS = (*NATIVE, "npz")
SUFFIX = {fmt: F.for_format(fmt).suffix or ".npz" for fmt in FORMATS}


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris", seed=0)


@pytest.fixture(scope="module")
def models(iris):
    out = {}
    for name in ("softmax", "mlp"):
        spec = model_spec_for(name, iris.n_features, iris.n_outputs)
        out[name] = (spec, shifted_weights(spec))
    return out


def _predict(fmt, spec, weights, X):
    """Predictions of the framework that reads format `fmt` (npz: the numpy reference)."""
    return F.for_format(fmt).predict(spec, weights, X)


def _native_name(spec, name, framework):
    """The native name of canonical tensor `name` in `framework` (the weight table's)."""
    return next(t for r in spec.resolved for t in r.tensors if t.name == name) \
        .native_name(framework)


@pytest.mark.parametrize("src,dst", list(itertools.permutations(FORMATS, 2)))
def test_convert_every_direction(tmp_path, models, iris, src, dst):
    for name, (spec, w) in models.items():
        a = tmp_path / f"{name}{SUFFIX[src]}"
        b = tmp_path / f"{name}_out{SUFFIX[dst]}"
        ic.save(src, spec, w, a)
        spec2, w2, fmt = ic.convert(a, b)
        assert fmt == dst and spec2 == spec
        spec3, w3 = ic.load(b)
        assert spec3 == spec
        assert set(w3) == set(w)
        for k in w:
            assert w3[k].shape == w[k].shape and w3[k].dtype == np.float32
            np.testing.assert_array_equal(w3[k], w[k])
        p_src = _predict(src, *ic.load(a), iris.X_test)
        p_dst = _predict(dst, spec3, w3, iris.X_test)
        assert p_src.shape == (len(iris.X_test), 3)
        np.testing.assert_allclose(p_dst, p_src, atol=1e-6, rtol=0)
        sidecar = json.loads(ic.sidecar_path(b).read_text())
        assert sidecar["format"] == dst and sidecar["model"] == spec.to_dict()
        assert sidecar["dtype"] == "float32"
        assert sidecar["shapes"]["dense_0/kernel"] == [4, 64 if name == "mlp" else 3]


def test_round_trip_all_formats(tmp_path, models, iris):
    spec, w = models["mlp"]
    p0 = _predict("keras", spec, w, iris.X_test)
    path = tmp_path / "m.keras"
    ic.save("keras", spec, w, path)
    for fmt in ("torch", "tf1", "keras"):
        nxt = tmp_path / f"m_{fmt}{SUFFIX[fmt]}"
        ic.convert(path, nxt)
        path = nxt
    spec2, w2 = ic.load(path)
    assert spec2 == spec
    for k in w:
        np.testing.assert_array_equal(w2[k], w[k])
    for fmt in FORMATS:
        np.testing.assert_allclose(_predict(fmt, spec2, w2, iris.X_test), p0, atol=1e-6, rtol=0)
    # native formats really are native: plain torch / Keras / TF readers understand them
    import torch

    sd = torch.load(tmp_path / "m_torch.pt", weights_only=True)
    assert _native_name(spec, "dense_0/kernel", "torch") == "dense_0.weight"
    np.testing.assert_array_equal(sd["dense_0.weight"].numpy(), w["dense_0/kernel"].T)
    import tensorflow as tf

    reader = tf.compat.v1.train.load_checkpoint(str(tmp_path / "m_tf1.ckpt"))
    np.testing.assert_array_equal(reader.get_tensor("dense_1/bias"), w["dense_1/bias"])


def test_float64_kept(tmp_path, iris):
    spec = model_spec_for("softmax", 4, 3)
    w = {k: v.astype(np.float64) for k, v in shifted_weights(spec).items()}
    for fmt in FORMATS:
        p = tmp_path / f"d{SUFFIX[fmt]}"
        ic.save(fmt, spec, w, p)
        _, w2 = ic.load(p)
        assert w2["dense_0/kernel"].dtype == np.float64
        np.testing.assert_array_equal(w2["dense_0/kernel"], w["dense_0/kernel"])


class _Evil:
    """A pickle that would write a file when unpickled by plain pickle."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ["ZOO_EVIL_MARK"]),))


def test_pickle_renamed_pt_is_refused(tmp_path, models, monkeypatch):
    spec, w = models["softmax"]
    good = tmp_path / "good.pt"
    ic.save("torch", spec, w, good)
    mark = tmp_path / "pwned"
    monkeypatch.setenv("ZOO_EVIL_MARK", str(mark))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps({"dense_0.weight": _Evil()}))
    (tmp_path / "bad.pt.json").write_text(ic.sidecar_path(good).read_text())
    with pytest.raises(DataError) as e:
        ic.load(bad)
    msg = str(e.value)
    assert "bad.pt" in msg and "weights_only=True" in msg and "\n" not in msg
    assert not mark.exists()


def test_random_bytes_and_foreign_files(tmp_path, models):
    spec, w = models["softmax"]
    rng = np.random.default_rng(0)
    for fmt in FORMATS:
        good = tmp_path / f"good{SUFFIX[fmt]}"
        ic.save(fmt, spec, w, good)
        bad = tmp_path / f"bad{SUFFIX[fmt]}"
        targets = [Path(f"{bad}.index"), Path(f"{bad}.data-00000-of-00001")] if fmt == "tf1" \
            else [bad]
        for t in targets:
            t.write_bytes(rng.bytes(300))
        (Path(f"{bad}.json")).write_text(ic.sidecar_path(good).read_text())
        with pytest.raises(DataError, match="bad"):
            ic.load(bad)
    # a zip that is not a Keras model
    import zipfile

    z = tmp_path / "zip.keras"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hello.txt", "hi")
    (tmp_path / "zip.keras.json").write_text((tmp_path / "good.keras.json").read_text())
    with pytest.raises(DataError, match="could not be loaded as a Keras model"):
        ic.load(z)


def test_checkpoint_for_another_model(tmp_path, models):
    spec, w = models["softmax"]
    mspec, mw = models["mlp"]
    other = model_spec_for("softmax", 64, 10)  # digits sizes
    for fmt in FORMATS:
        a = tmp_path / f"a{SUFFIX[fmt]}"
        ic.save(fmt, spec, w, a)
        ic.write_sidecar(fmt, other, init_weights(other), a)  # sidecar of another shape
        with pytest.raises(DataError, match="do(es)? not fit"):
            ic.load(a)
        m = tmp_path / f"m{SUFFIX[fmt]}"
        ic.save(fmt, mspec, mw, m)
        ic.write_sidecar(fmt, spec, w, m)  # an MLP file with a softmax sidecar
        with pytest.raises(DataError, match="do(es)? not fit"):
            ic.load(m)
    # wrong-shaped weights are refused on save too
    with pytest.raises(DataError, match="dense_0/kernel"):
        ic.save("torch", other, w, tmp_path / "x.pt")


def test_missing_file_sidecar_and_suffix(tmp_path, models):
    spec, w = models["softmax"]
    with pytest.raises(DataNotFoundError, match="nope.keras"):
        ic.load(tmp_path / "nope.keras")
    with pytest.raises(DataNotFoundError, match="nope.ckpt"):
        ic.load(tmp_path / "nope.ckpt")
    p = tmp_path / "w.pt"
    ic.save("torch", spec, w, p)
    ic.sidecar_path(p).unlink()
    with pytest.raises(DataError, match="no sidecar"):
        ic.load(p)
    with pytest.raises(ConfigError, match="suffix"):
        ic.load(tmp_path / "w.bin")
    with pytest.raises(ZooError, match="Did you mean 'torch'"):
        ic.format_of("x.bin", to="troch")
    assert ic.format_of("x.bin", to="tf1") == "tf1"
    assert {ic.format_of(f"a{s}") for s in ic.FORMATS} == {"keras", "torch", "tf1", "keras2",
                                                            "npz"}


def test_no_overwrite_without_force(tmp_path, models):
    spec, w = models["softmax"]
    w2 = {k: v + 1 for k, v in w.items()}
    for fmt in FORMATS:
        p = tmp_path / f"w{SUFFIX[fmt]}"
        ic.save(fmt, spec, w, p)
        with pytest.raises(ConfigError, match="already exists.*--force"):
            ic.save(fmt, spec, w2, p)
        np.testing.assert_array_equal(ic.load(p)[1]["dense_0/bias"], w["dense_0/bias"])
        ic.save(fmt, spec, w2, p, force=True)
        np.testing.assert_array_equal(ic.load(p)[1]["dense_0/bias"], w2["dense_0/bias"])
    src = tmp_path / "w.pt"
    with pytest.raises(ConfigError, match="already exists"):
        ic.convert(src, tmp_path / "w.keras")
    # nothing temporary left behind
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def _zoo(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_imports_only_the_needed_framework(tmp_path, models):
    spec, w = models["softmax"]
    ic.save("torch", spec, w, tmp_path / "w.pt")
    code = ("import sys; import zoo.interchange as ic, zoo.commands.train, zoo.commands.convert, "
            "zoo.commands.predict; assert not {'torch','tensorflow','keras'} & set(sys.modules);"
            f"ic.load({str(tmp_path / 'w.pt')!r}); "
            "assert 'torch' in sys.modules and 'tensorflow' not in sys.modules "
            "and 'keras' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_cli_train_convert_predict(tmp_path, iris):
    r = _zoo("train", "softmax", "--framework", "torch", "--dataset", "iris", "--epochs", "3",
             "--save", "s.pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "final training loss" in r.stdout and "test accuracy" in r.stdout
    assert (tmp_path / "s.pt").is_file() and (tmp_path / "s.pt.json").is_file()
    r = _zoo("train", "softmax", "--framework", "torch", "--dataset", "iris", "--save", "s.pt",
             cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    r = _zoo("convert", "s.pt", "s.keras", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _zoo("predict", "s.keras", "--dataset", "iris", "--json", "p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pred = np.array(json.loads((tmp_path / "p.json").read_text())["predictions"])
    spec, w = ic.load(tmp_path / "s.pt")
    np.testing.assert_allclose(pred, _predict("torch", spec, w, iris.X_test), atol=1e-6, rtol=0)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-6)

    r = _zoo("predict", "missing.keras", "--dataset", "iris", cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "missing.keras" in r.stderr
    r = _zoo("convert", "s.pt", "s.bin", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_convert_to_and_suffixes(tmp_path, models, iris):
    spec, w = models["softmax"]
    src = tmp_path / "w.keras"
    ic.save("keras", spec, w, src)
    # --to with a name of no known suffix: the sidecar tells the format when loading
    _, _, fmt = ic.convert(src, tmp_path / "w.out", to="tf1")
    assert fmt == "tf1" and ic.stored_format(tmp_path / "w.out") == "tf1"
    assert (tmp_path / "w.out.index").is_file()
    np.testing.assert_array_equal(ic.load(tmp_path / "w.out")[1]["dense_0/bias"],
                                  w["dense_0/bias"])
    # --to contradicting a known suffix is refused before anything is written
    with pytest.raises(ConfigError, match=r"name it \*\.ckpt"):
        ic.convert(src, tmp_path / "w2.pt", to="tf1")
    assert not (tmp_path / "w2.pt").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        ic.convert(src, tmp_path / "no" / "dir.pt")
    with pytest.raises(ConfigError, match="cannot tell"):
        ic.load(tmp_path / "plain.bin")


def test_keras_lambda_refused_by_safe_mode(tmp_path, models):
    import keras

    spec, w = models["softmax"]
    m = keras.Sequential([keras.layers.Input((4,)), keras.layers.Lambda(lambda t: t * 2),
                          keras.layers.Dense(3, name="dense_0")])
    path = tmp_path / "lam.keras"
    m.save(path)
    ic.write_sidecar("keras", spec, w, path)
    with pytest.raises(DataError, match="lam.keras.*Lambda"):
        ic.load(path)


# ----------------------------------------------------------------------------- canonical .npz
def test_npz_holds_the_canonical_weights_and_needs_no_framework(tmp_path, models):
    """`.npz` = canonical names as keys, canonical layout, plain arrays: np.load reads it; the
    zoo writes and reads it without importing any framework, with the same sidecar."""
    spec, w = models["mlp"]
    code = ("import sys, numpy as np, zoo.interchange as ic; from zoo.specs import "
            "model_spec_for, init_weights; s = model_spec_for('mlp', 4, 3); "
            f"ic.save('npz', s, init_weights(s, 1), {str(tmp_path / 'a.npz')!r}); "
            f"ic.load({str(tmp_path / 'a.npz')!r}); "
            "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    ic.save("npz", spec, w, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z.files == list(spec.weight_shapes())  # model order
        for k in w:
            np.testing.assert_array_equal(z[k], w[k])
    side = json.loads(ic.sidecar_path(tmp_path / "m.npz").read_text())
    assert side == {"format": "npz", "model": spec.to_dict(), "dtype": "float32",
                    "shapes": {k: list(v) for k, v in spec.weight_shapes().items()}}


def test_npz_with_missing_extra_or_pickled_arrays_is_refused(tmp_path, models):
    spec, w = models["softmax"]
    good = tmp_path / "good.npz"
    ic.save("npz", spec, w, good)
    side = ic.sidecar_path(good).read_text()
    cases = {"extra.npz": {**w, "dense_9/bias": np.zeros(3, np.float32)},
             "missing.npz": {"dense_0/kernel": w["dense_0/kernel"]},
             "pickled.npz": {**w, "dense_0/bias": np.array([{"x": 1}, None], dtype=object)}}
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
        (tmp_path / f"{name}.json").write_text(side)
    with pytest.raises(DataError, match=r"missing nothing, unexpected \['dense_9/bias'\]"):
        ic.load(tmp_path / "extra.npz")
    with pytest.raises(DataError, match=r"missing \['dense_0/bias'\], unexpected nothing"):
        ic.load(tmp_path / "missing.npz")
    with pytest.raises(DataError, match=r"could not be read as canonical weights \(ValueError: "
                       r"Object arrays cannot be loaded when allow_pickle=False\)"):
        ic.load(tmp_path / "pickled.npz")


@pytest.fixture(scope="module")
def cnn():
    """The convnet on the digits images, with weights that are not its initial ones."""
    ds = load_dataset("digits", seed=0)
    spec = model_spec_for("cnn", ds.n_features, ds.n_outputs, input_shape=ds.image_shape)
    return ds, spec, shifted_weights(spec, seed=3)


def test_expected_shapes_come_from_the_layer_tables(cnn):
    _, spec, _ = cnn
    assert ic.expected_shapes(spec) == {
        "conv2d_0/kernel": (3, 3, 1, 8), "conv2d_0/bias": (8,),
        "conv2d_1/kernel": (3, 3, 8, 16), "conv2d_1/bias": (16,),
        "dense_0/kernel": (2 * 2 * 16, 10), "dense_0/bias": (10,)}
    nielsen = model_spec_for("nielsen", 784, 10)
    assert ic.expected_shapes(nielsen) == {"dense_0/kernel": (784, 30), "dense_0/bias": (30,),
                                           "dense_1/kernel": (30, 10), "dense_1/bias": (10,)}


def test_cnn_round_trip_through_every_format_predicts_the_same(tmp_path, cnn):
    """keras -> torch -> tf1 -> npz -> keras: the convnet's weights come back bit for bit, and
    every framework predicts the digits from its own file as the float64 reference does from
    the .npz (within 1e-6): the torch file holds OIHW kernels and a Dense whose rows follow
    torch's C, H, W flattening, and computes the same function."""
    ds, spec, w = cnn
    X = ds.inputs(spec, "test")
    path = tmp_path / "c.keras"
    ic.save("keras", spec, w, path)
    files = {"keras": path}
    for fmt in ("torch", "tf1", "npz"):
        nxt = tmp_path / f"c{SUFFIX[fmt]}"
        ic.convert(path, nxt)
        files[fmt] = path = nxt
    back = tmp_path / "back.keras"
    ic.convert(path, back)
    spec2, w2 = ic.load(back)
    assert spec2 == spec and list(w2) == list(w)
    for k in w:
        np.testing.assert_array_equal(w2[k], w[k])
    import torch

    sd = torch.load(files["torch"], weights_only=True)
    np.testing.assert_array_equal(sd["conv2d_0.weight"].numpy(),
                                  w["conv2d_0/kernel"].transpose(3, 2, 0, 1))
    flat = w["dense_0/kernel"].reshape(2, 2, 16, 10).transpose(3, 2, 0, 1).reshape(10, 64)
    np.testing.assert_array_equal(sd["dense_0.weight"].numpy(), flat)
    reference = _predict("npz", *ic.load(files["npz"]), X)
    assert reference.shape == (360, 10)
    for fmt in NATIVE:
        np.testing.assert_allclose(_predict(fmt, *ic.load(files[fmt]), X), reference,
                                   atol=1e-6, rtol=0)


def test_cli_npz_convert_predict_and_init(tmp_path, iris, cnn):
    """`zoo convert SRC out.npz`, `zoo predict w.npz` (the float64 reference computes) and
    `zoo train --init` from another framework's file, which trains exactly as the framework
    does from those weights in-process."""
    ds, spec, w = cnn
    ic.save("torch", spec, w, tmp_path / "c.pt")
    r = _zoo("convert", "c.pt", "c.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote c.npz (npz, model cnn, 1898 parameters) from c.pt"
    r = _zoo("predict", "c.npz", "--dataset", "digits", "--json", "p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    assert (doc["model"], doc["format"]) == ("cnn", "npz")
    np.testing.assert_allclose(np.array(doc["predictions"]),
                               _predict("torch", spec, w, ds.inputs(spec, "test")),
                               atol=1e-6, rtol=0)

    soft = model_spec_for("softmax", iris.n_features, iris.n_outputs)
    start = shifted_weights(soft, seed=5)
    ic.save("keras", soft, start, tmp_path / "start.keras")
    r = _zoo("train", "softmax", "--framework", "torch", "--dataset", "iris", "--epochs", "2",
             "--init", "start.keras", "--save", "end.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from torch_models.train import train
    from zoo.optimizers import OptimizerSpec
    from zoo.specs import TrainSpec

    ts = TrainSpec(OptimizerSpec("sgd", lr=0.5), epochs=2)
    want = train(soft, ts, iris.X_train, iris.y_train, start).weights
    spec_end, end = ic.load(tmp_path / "end.npz")
    assert spec_end == soft
    for k in want:
        np.testing.assert_array_equal(end[k], want[k])


@pytest.mark.parametrize("model", ["cnn", "lenet", "nielsen", "cnn_bn", "mlp_ln", "lstm",
                                   "gru", "embedding_gru"])
def test_layer_models_convert_in_every_direction(tmp_path, model):
    """The layer models through all six directions between the native formats and to and
    from the canonical .npz: the weights come back bit for bit and the target framework's
    predictions equal the source framework's within 1e-6 (LeNet on digits as 28x28 images;
    cnn_bn's moving statistics decide its inference-mode predictions)."""
    from helpers import load, model_inputs, spec_for

    ds = load({"lenet": "digits28", "embedding_gru": "tokens"}.get(model, "digits"))
    spec = spec_for(model, ds)
    w = shifted_weights(spec, seed=5)
    X = model_inputs(ds.X_test[:60], spec)
    files = {}
    for fmt in FORMATS:
        files[fmt] = tmp_path / f"{model}{SUFFIX[fmt]}"
        ic.save(fmt, spec, w, files[fmt])
    preds = {fmt: _predict(fmt, *ic.load(files[fmt]), X) for fmt in FORMATS}
    worst = 0.0
    for src, dst in itertools.permutations(FORMATS, 2):
        out = tmp_path / f"{src}_to_{dst}{SUFFIX[dst]}"
        ic.convert(files[src], out)
        spec2, w2 = ic.load(out)
        assert spec2 == spec and list(w2) == list(w)
        for k in w:
            np.testing.assert_array_equal(w2[k], w[k], err_msg=f"{src} -> {dst}: {k}")
        worst = max(worst, float(np.max(np.abs(preds[dst] - preds[src]))))
    print(f"{model}: largest prediction difference over the 12 directions {worst:.2g}")
    assert worst <= 1e-6


def test_predict_takes_a_row_sequence_model_on_its_images(tmp_path):
    """An lstm trained on digits reads each 8x8 image as 8 steps of 8 features: `zoo predict`
    gives it the dataset's images that way (it refused them as '64 features' before)."""
    import json as _json

    from zoo import data as zdata
    from zoo.cli import main
    from zoo.commands.compare import spec_for_dataset
    from zoo.specs import init_weights

    ds = zdata.load("digits")
    spec = spec_for_dataset("lstm", ds)
    path = tmp_path / "lstm.npz"
    ic.save("npz", spec, init_weights(spec, 0, "float64"), path)
    assert main(["predict", str(path), "--dataset", "digits", "--json",
                 str(tmp_path / "p.json")]) == 0
    doc = _json.loads((tmp_path / "p.json").read_text())
    assert len(doc["predictions"]) == len(ds.X_test) and len(doc["predictions"][0]) == 10
