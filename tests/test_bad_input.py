"""The bad-input matrix: every row is met with one clear sentence.

For every row there is a Python-API check (the project's own exception, `zoo.errors`, with the
message asserted) and, where the row can be reached from the command line, a CLI check
(`python -m zoo ...` in a subprocess: exit code 2, exactly one line of the zoo's own on stderr,
no traceback). The CLI cases run once, four at a time, in a module fixture; each test then
reads its case's result.

Image models add their own rows: an image model on flat data, images smaller than a model
needs (a kernel larger than what reaches it), and `--init` weights of another model or of the
same model for other inputs (a channel count that does not fit).

Two rows are not errors, by design:
- a batch size above the number of samples gives one full batch per epoch (full-batch gradient
  descent); `zoo train` says so in one line and trains;
- integer labels where one-hot labels are expected: no zoo API takes one-hot targets (every
  loss takes integer labels, `zoo.data.one_hot` makes one-hot from integers); the reverse
  mistake that can be made is encoding twice, which `one_hot` refuses.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_run import one_error_line, zoo, zoo_lines

from zoo import data, interchange
from zoo.compare import parse_frameworks
from zoo.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DataNotFoundError,
    UnknownNameError,
)
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, init_weights, model_spec_for

SHARED_MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


class Touch:
    """A pickle that would create `path` when unpickled: proof that nothing unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# ----------------------------------------------------------------------------- fixture files
def _files(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = np.arange(20) % 3
    nan_X = X.copy()
    nan_X[2, 1] = np.nan
    inf_X = X.copy()
    inf_X[2, 1] = np.inf
    f = {name: d / name for name in (
        "withnan.npz", "withinf.npz", "negative.npz", "fractional.npz", "bigvalues.npz",
        "onehot.npz", "empty.npz", "noX.npz", "noy.npz", "pickled.npz", "truncated.npz",
        "ok.csv", "nonnumeric.csv", "ragged.csv", "headeronly.csv", "w.pt", "other.pt",
        "shape.pt", "evil.pt", "evil.keras", "corrupt.pt", "tiny.npz", "rgb.npz", "cnn1.npz",
        "mlp.npz", "badtokens.npz", "ragged.npz")}
    np.savez(f["withnan.npz"], X=nan_X, y=y)
    np.savez(f["withinf.npz"], X=inf_X, y=y)
    np.savez(f["negative.npz"], X=X, y=y - 1)
    np.savez(f["fractional.npz"], X=X, y=np.where(y == 1, 0.5, y))
    np.savez(f["bigvalues.npz"], X=X, y=np.where(y == 2, 5000, y))
    np.savez(f["onehot.npz"], X=X, y=np.eye(3)[y])
    np.savez(f["empty.npz"], X=np.zeros((0, 3)), y=np.zeros(0))
    np.savez(f["noX.npz"], features=X, y=y)
    np.savez(f["noy.npz"], X=X, labels=y)
    f["pickled.npz"].write_bytes(pickle.dumps(Touch(d / "unpickled-npz")))
    f["truncated.npz"].write_bytes(f["negative.npz"].read_bytes()[:300])
    f["ok.csv"].write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    f["nonnumeric.csv"].write_text("a,b,label\n1,2,0\n3,x,1\n")
    f["ragged.csv"].write_text("a,b,label\n1,2,0\n3,4\n")
    f["headeronly.csv"].write_text("a,b,label\n")
    # weights: a softmax for iris in torch's format, and broken variants with valid sidecars
    from torch_models.io import save

    spec = ModelSpec("softmax", 4, 3)
    save(spec, init_weights(spec), f["w.pt"])
    side = json.loads(interchange.sidecar_path(f["w.pt"]).read_text())
    mlp = model_spec_for("mlp", 4, 3)
    for name, model in (("other.pt", mlp), ("shape.pt", ModelSpec("softmax", 5, 3))):
        f[name].write_bytes(f["w.pt"].read_bytes())
        interchange.sidecar_path(f[name]).write_text(json.dumps(
            {**side, "model": model.to_dict(),
             "shapes": {k: list(v) for k, v in interchange.expected_shapes(model).items()}}))
    f["evil.pt"].write_bytes(pickle.dumps(Touch(d / "unpickled-pt")))
    interchange.sidecar_path(f["evil.pt"]).write_text(json.dumps(side))
    f["evil.keras"].write_bytes(pickle.dumps(Touch(d / "unpickled-keras")))
    interchange.sidecar_path(f["evil.keras"]).write_text(json.dumps({**side, "format": "keras"}))
    f["corrupt.pt"].write_bytes(f["w.pt"].read_bytes()[:200])
    interchange.sidecar_path(f["corrupt.pt"]).write_text(json.dumps(side))
    # images: 3x3 (too small for lenet), 8x8 RGB; canonical weights of a 1-channel 8x8 cnn
    # and of an iris MLP (written without any framework)
    np.savez(f["tiny.npz"], X=rng.random((40, 3, 3)), y=np.arange(40) % 2 + 1)
    np.savez(f["rgb.npz"], X=rng.random((40, 8, 8, 3)), y=np.arange(40) % 4)
    cnn1 = model_spec_for("cnn", 64, 4, input_shape=(8, 8, 1))
    interchange.save("npz", cnn1, init_weights(cnn1), f["cnn1.npz"])
    interchange.save("npz", mlp, init_weights(mlp), f["mlp.npz"])
    # token sequences: an id outside the vocabulary; ragged sequences (an object array)
    ids = rng.integers(0, 12, (30, 6))
    ids[4, 2] = 12
    np.savez(f["badtokens.npz"], X=ids, y=ids[:, 0] % 3, vocab=np.array(12))
    np.savez(f["ragged.npz"], X=np.array([np.arange(3), np.arange(5)], dtype=object),
             y=np.array([0, 1]))
    # MNIST folders: a fake mnist.npz (checksum mismatch), a truncated IDX .gz, nothing
    for sub in ("fake", "truncated", "nothing"):
        (d / sub).mkdir()
    (d / "fake" / "mnist.npz").write_bytes(f["negative.npz"].read_bytes())
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        raw = (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()
        (d / "truncated" / "t10k-images-idx3-ubyte.gz").write_bytes(raw[:5000])
        (d / "truncated" / "t10k-labels-idx1-ubyte.gz").write_bytes(
            (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    else:  # a gzip cut short stands in for it
        import gzip

        (d / "truncated" / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(b"\x00\x00\x08\x03" + bytes(100))[:40])
        (d / "truncated" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(20)))
    return f


TRAIN = ["train", "softmax", "--framework", "torch"]

FLAT = ("zoo compare: error: model 'cnn' takes images but dataset 'iris' has 4 flat features; "
        "use an image dataset (digits, mnist, mnist10k) or an NPZ of (N, H, W) or (N, H, W, C) "
        "images.")
TOO_SMALL = ("model 'lenet' needs images of at least 12x12 but dataset 'digits' has 8x8x1 images "
             "(conv2d_1: its 5x5 kernel is larger than its 4x4 input ('valid' padding)); use "
             "larger images or a model that fits 8x8 images: cnn, cnn_bn.")
KERNEL = ("model 'lenet' needs images of at least 12x12 but dataset 'tiny' has 3x3x1 images "
          "(conv2d_1: its 5x5 kernel is larger than its 1x1 input ('valid' padding)); use larger "
          "images or a model that fits 3x3 images: cnn, cnn_bn.")
CHANNELS = ("--init '{cnn1.npz}' holds a cnn for 1-channel images but dataset 'rgb' has "
            "3-channel images; pass weights trained on 3-channel images or leave --init out.")
OTHER_MODEL = ("--init '{mlp.npz}' holds weights of model 'mlp', not 'softmax'; pass weights "
               "saved for softmax (zoo train softmax ... --save PATH) or leave --init out.")

#: case id -> (CLI arguments with {name} placeholders for fixture files, the expected line)
CLI: dict[str, tuple[list[str], str]] = {
    "features-mismatch": (["predict", "{w.pt}", "--dataset", "digits"],
                          "zoo predict: error: '{w.pt}' holds a softmax model for 4 features but "
                          "dataset 'digits' has 64; predict the dataset the model was trained on."),
    "labels-out-of-range": ([*TRAIN, "--npz", "{bigvalues.npz}"],
                            "zoo train: error: model 'softmax' is a classifier but dataset "
                            "'bigvalues' is a regression task (its targets hold 3 distinct values "
                            "up to 5000, not class labels 0..C-1); use the linear model, or "
                            "encode the classes as integers 0..C-1."),
    "labels-negative": ([*TRAIN, "--npz", "{negative.npz}"],
                        "zoo train: error: model 'softmax' is a classifier but dataset 'negative' "
                        "is a regression task (its targets hold negative values such as -1, not "
                        "class labels 0..C-1); use the linear model, or encode the classes as "
                        "integers 0..C-1."),
    "labels-non-integer": ([*TRAIN, "--npz", "{fractional.npz}"],
                           "zoo train: error: model 'softmax' is a classifier but dataset "
                           "'fractional' is a regression task (its targets hold non-integer values "
                           "such as 0.5, not class labels 0..C-1); use the linear model, or encode "
                           "the classes as integers 0..C-1."),
    "labels-one-hot": ([*TRAIN, "--npz", "{onehot.npz}"],
                       "zoo train: error: onehot: labels have shape (20, 3), which looks one-hot; "
                       "integer class labels of shape (N,) are expected: use y.argmax(axis=1)."),
    "features-nan": ([*TRAIN, "--npz", "{withnan.npz}"],
                     "zoo train: error: withnan: features contain 1 non-finite values (NaN or "
                     "inf), the first at row 2, column 1; drop or impute them first."),
    "features-inf": ([*TRAIN, "--npz", "{withinf.npz}"],
                     "zoo train: error: withinf: features contain 1 non-finite values (NaN or "
                     "inf), the first at row 2, column 1; drop or impute them first."),
    "empty-npz": ([*TRAIN, "--npz", "{empty.npz}"],
                  "zoo train: error: empty: the dataset is empty (0 samples); provide at least "
                  "one row."),
    "empty-csv": ([*TRAIN, "--csv", "{headeronly.csv}", "--target", "label"],
                  "zoo train: error: {headeronly.csv}: the dataset is empty (a header but no data "
                  "rows)."),
    "batch-size-0": ([*TRAIN, "--dataset", "iris", "--batch-size", "0"],
                     "zoo train: error: batch size must be at least 1, got 0; pass e.g. 32."),
    "epochs-0": ([*TRAIN, "--dataset", "iris", "--epochs", "0"],
                 "zoo train: error: epochs must be an integer >= 1, got 0."),
    "lr-negative": ([*TRAIN, "--dataset", "iris", "--lr", "-1"],
                    "zoo train: error: learning rate must be a positive finite number, got -1.0; "
                    "pass e.g. --lr 0.01."),
    "lr-nan": ([*TRAIN, "--dataset", "iris", "--lr", "nan"],
               "zoo train: error: learning rate must be a positive finite number, got nan; pass "
               "e.g. --lr 0.01."),
    "unknown-model": (["train", "softmx", "--framework", "torch", "--dataset", "iris"],
                      "zoo train: error: unknown model 'softmx'. Did you mean 'softmax'? Known "
                      "models: cnn, cnn_bn, embedding_gru, gru, lenet, linear, logistic, lstm, "
                      "mlp, mlp_ln, nielsen, softmax, svm."),
    "unknown-framework": (["train", "softmax", "--framework", "trch", "--dataset", "iris"],
                          "zoo train: error: unknown framework 'trch'. Did you mean 'torch'? "
                          "Known frameworks: keras, keras2, tf1, tf1-layers, torch."),
    "framework-not-in-process": (["train", "softmax", "--framework", "keras-torch", "--dataset",
                                  "iris"],
                                 "zoo train: error: zoo train runs keras, tf1, torch, keras2 and "
                                 "tf1-layers in its own process, not keras-torch; train keras-torch with `zoo compare "
                                 "MODEL --frameworks keras-torch,...`."),
    "unknown-optimizer": ([*TRAIN, "--dataset", "iris", "--optimizer", "adm"],
                          "zoo train: error: unknown optimizer 'adm'. Did you mean 'adam'? Known "
                          "optimizers: adagrad, adam, centered_rmsprop, momentum, nesterov, "
                          "rmsprop, sgd."),
    "unknown-dataset": ([*TRAIN, "--dataset", "irs"],
                        "zoo train: error: unknown dataset 'irs'. Did you mean 'iris'? Known "
                        "datasets: breast_cancer, digits, icecream, iris, mnist, mnist10k, tokens."),
    "no-fixed-split": (["data", "iris", "--split", "fixed"],
                       "zoo data: error: dataset 'iris' has no fixed split (only mnist, mnist10k "
                       "have one); use the seeded split."),
    "csv-missing-target": ([*TRAIN, "--csv", "{ok.csv}", "--target", "y"],
                           "zoo train: error: {ok.csv}: no column named 'y'; the columns are a, b, "
                           "label. Pass one of them as --target."),
    "csv-non-numeric": ([*TRAIN, "--csv", "{nonnumeric.csv}", "--target", "label"],
                        "zoo train: error: {nonnumeric.csv}: line 3, column 'b' holds 'x', which "
                        "is not a number; every cell must be numeric."),
    "csv-ragged": ([*TRAIN, "--csv", "{ragged.csv}", "--target", "label"],
                   "zoo train: error: {ragged.csv}: line 3 has 2 fields but the header has 3; "
                   "every row needs one value per column."),
    "npz-without-X": ([*TRAIN, "--npz", "{noX.npz}"],
                      "zoo train: error: {noX.npz}: the archive has no array named 'X' (it holds "
                      "features, y); save it with np.savez(path, X=..., y=...)."),
    "npz-without-y": ([*TRAIN, "--npz", "{noy.npz}"],
                      "zoo train: error: {noy.npz}: the archive has no array named 'y' (it holds "
                      "X, labels); save it with np.savez(path, X=..., y=...)."),
    "missing-file": ([*TRAIN, "--npz", "{dir}/absent.npz"],
                     "zoo train: error: {dir}/absent.npz: no such file; pass the path of an "
                     "existing .npz file."),
    "truncated-npz": ([*TRAIN, "--npz", "{truncated.npz}"],
                      "zoo train: error: {truncated.npz}: not a readable .npz archive "
                      "(BadZipFile: File is not a zip file); the file is truncated or corrupt."),
    "missing-mnist": (["data", "mnist10k", "--data-dir", "{dir}/nothing"],
                      "zoo data: error: MNIST files not found; looked in {dir}/nothing/"
                      "{{t10k-images-idx3-ubyte.gz,t10k-labels-idx1-ubyte.gz}}; {dir}/nothing/"
                      "mnist.npz. Pass --data-dir (or set ZOO_DATA_DIR) to a directory holding "
                      "the four IDX .gz files or Keras's mnist.npz."),
    "checksum-mismatch": (["data", "mnist10k", "--data-dir", "{dir}/fake"],
                          "zoo data: error: {dir}/fake/mnist.npz: SHA-256 "),
    "truncated-mnist": (["data", "mnist10k", "--data-dir", "{dir}/truncated"],
                        "zoo data: error: {dir}/truncated/t10k-images-idx3-ubyte.gz: SHA-256 "),
    "weights-other-model": (["predict", "{other.pt}", "--dataset", "iris"],
                            "zoo predict: error: the state_dict in '{other.pt}' does not fit model "
                            "'mlp' of its sidecar (torch tensors do not match the model: missing "
                            "['dense_1.weight', 'dense_1.bias', 'dense_2.weight', "
                            "'dense_2.bias'], unplaced nothing); the file and its .json sidecar "
                            "belong to different models: re-save the weights with `zoo train "
                            "--save` or `zoo convert`."),
    "weights-other-shapes": (["predict", "{shape.pt}", "--dataset", "iris"],
                             "zoo predict: error: the state_dict in '{shape.pt}' does not fit "
                             "model 'softmax' of its sidecar (torch tensor dense_0.weight: "
                             "expected shape (3, 5), got (3, 4)); the file and its .json sidecar "
                             "belong to different models: re-save the weights with `zoo train "
                             "--save` or `zoo convert`."),
    "weights-corrupt": (["predict", "{corrupt.pt}", "--dataset", "iris"],
                        "zoo predict: error: '{corrupt.pt}' is not a torch state_dict that loads "
                        "safely (torch.load(weights_only=True) refused it: PytorchStreamReader "
                        "failed reading zip archive"),
    "pickle-as-torch-weights": (["predict", "{evil.pt}", "--dataset", "iris"],
                                "zoo predict: error: '{evil.pt}' is not a torch state_dict that "
                                "loads safely (torch.load(weights_only=True) refused it: Weights "
                                "only load failed."),
    "pickle-as-keras-weights": (["predict", "{evil.keras}", "--dataset", "iris"],
                                "zoo predict: error: '{evil.keras}' is not a Keras .keras file (not "
                                "a zip archive); pass a file written by Keras `model.save` or "
                                "`zoo train --save`."),
    "pickle-as-npz-data": ([*TRAIN, "--npz", "{pickled.npz}"],
                           "zoo train: error: {pickled.npz}: not a readable .npz archive (a "
                           "pickle, which is never loaded for safety); save the arrays with "
                           "np.savez(path, X=..., y=...)."),
    "token-outside-vocabulary": (["train", "embedding_gru", "--framework", "torch", "--npz",
                                  "{badtokens.npz}", "--save", "{dir}/never4.pt"],
                                 "zoo train: error: {badtokens.npz}: token id 12 at sample 4, "
                                 "position 2 is not in the vocabulary [0, 12); token ids must "
                                 "be whole numbers below the vocabulary size 12."),
    "sequence-model-on-flat-data": (["train", "lstm", "--framework", "torch", "--dataset",
                                     "iris"],
                                    "zoo train: error: model 'lstm' takes images but dataset "
                                    "'iris' has 4 flat features; use an image dataset (digits, "
                                    "mnist, mnist10k) or an NPZ of (N, H, W) or (N, H, W, C) "
                                    "images."),
    "token-model-without-tokens": (["train", "embedding_gru", "--framework", "torch",
                                    "--dataset", "iris"],
                                   "zoo train: error: model 'embedding_gru' reads token ids but "
                                   "dataset 'iris' has none; use a token dataset (tokens)."),
    "ragged-sequences": (["train", "embedding_gru", "--framework", "torch", "--npz",
                          "{ragged.npz}"],
                         "zoo train: error: {ragged.npz}: holds object (pickled) arrays, which "
                         "are never loaded for safety (Object arrays cannot be loaded when "
                         "allow_pickle=False); save plain numeric arrays (ragged sequences: "
                         "pad them to one length first)."),
    "image-model-on-flat-data": (["compare", "cnn", "--dataset", "iris", "--frameworks", "numpy",
                                  "--json", "{dir}/never.json"], FLAT),
    "image-weights-on-flat-data": (["predict", "{cnn1.npz}", "--dataset", "iris"],
                                   "zoo predict: error: '{cnn1.npz}' holds a cnn model for 8x8x1 "
                                   "images but dataset 'iris' has 4 flat features; predict the "
                                   "dataset the model was trained on."),
    "images-too-small": (["train", "lenet", "--framework", "torch", "--dataset", "digits",
                          "--save", "{dir}/never.pt"], "zoo train: error: " + TOO_SMALL),
    "kernel-larger-than-input": (["train", "lenet", "--framework", "torch", "--npz",
                                  "{tiny.npz}"], "zoo train: error: " + KERNEL),
    "init-channels": (["train", "cnn", "--framework", "torch", "--npz", "{rgb.npz}", "--init",
                       "{cnn1.npz}", "--save", "{dir}/never2.pt"],
                      "zoo train: error: " + CHANNELS),
    "init-other-model": (["train", "softmax", "--framework", "torch", "--dataset", "iris",
                          "--init", "{mlp.npz}", "--save", "{dir}/never3.pt"],
                         "zoo train: error: " + OTHER_MODEL),
    "init-other-shapes": (["compare", "softmax", "--dataset", "digits", "--frameworks", "numpy",
                           "--init", "{w.pt}", "--json", "{dir}/never2.json"],
                          "zoo compare: error: --init '{w.pt}' holds a softmax for input 4 and 3 "
                          "outputs but dataset 'digits' needs input 64 and 10 outputs "
                          "(dense_0/kernel is (4, 3), the model needs (64, 10)); pass weights "
                          "saved for this data or leave --init out."),
}


#: cases whose line goes on with text that is not the zoo's (a digest, torch's own message)
PREFIX_ONLY = {"checksum-mismatch", "truncated-mnist", "weights-corrupt", "pickle-as-torch-weights"}


def _fill(text: str, files: dict[str, Path], d: Path) -> str:
    """Replace {dir} and {<fixture file name>} (str.format would read "w.pt" as an attribute)."""
    names = {"dir": str(d), **{k: str(v) for k, v in files.items()}}
    return re.sub(r"(?<!\{)\{([\w.]+)\}(?!\})", lambda m: names[m.group(1)], text) \
        .replace("{{", "{").replace("}}", "}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = _files(d)

    def run(case: str) -> subprocess.CompletedProcess:
        return zoo(*[_fill(a, files, d) for a in CLI[case][0]])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(CLI, pool.map(run, CLI), strict=True))
    return d, files, results


def check_cli(env, case: str) -> None:
    d, files, results = env
    line = one_error_line(results[case])
    want = _fill(CLI[case][1], files, d)
    if case in PREFIX_ONLY:
        assert line.startswith(want), (line, want)
    else:
        assert line == want


# ----------------------------------------------------------------------------- the API side
def _iris():
    from helpers import load

    return load("iris")


def _torch_train(spec, X, y, **train_kw):
    from torch_models.train import train

    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), **{"epochs": 1, "batch_size": 32, **train_kw})
    return train(spec, ts, X, y, init_weights(spec))


def test_features_mismatch(env):
    ds = _iris()
    with pytest.raises(ConfigError, match=r"^torch_models: the model expects samples of shape "
                       r"\(5,\), got \(4,\); build the spec from the dataset's sizes\.$"):
        _torch_train(ModelSpec("softmax", 5, 3), ds.X_train, ds.y_train)
    check_cli(env, "features-mismatch")


def test_labels_out_of_range(env):
    ds = _iris()
    y = ds.y_train.copy()
    y[7] = 3
    with pytest.raises(DataError, match=r"^torch_models: labels must be integers in \[0, 3\); "
                       r"found values from 0 to 3\. Encode classes as 0\.\.2\.$"):
        _torch_train(ModelSpec("softmax", 4, 3), ds.X_train, y)
    check_cli(env, "labels-out-of-range")


def test_labels_negative(env):
    ds = _iris()
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 3\); found values "
                       r"from -1 to 1\."):
        _torch_train(ModelSpec("softmax", 4, 3), ds.X_train, ds.y_train - 1)
    check_cli(env, "labels-negative")


def test_labels_non_integer(env):
    ds = _iris()
    with pytest.raises(DataError, match=r"labels must be integers in \[0, C\); found non-integer "
                       r"values such as 0\.5\."):
        _torch_train(ModelSpec("softmax", 4, 3), ds.X_train, ds.y_train + 0.5)
    check_cli(env, "labels-non-integer")


def test_one_hot_labels_where_integers_are_expected(env):
    ds = _iris()
    with pytest.raises(DataError, match=r"labels have shape \(120, 3\), which looks one-hot; "
                       r"integer class labels of shape \(N,\) are expected: use "
                       r"y\.argmax\(axis=1\)\."):
        _torch_train(ModelSpec("softmax", 4, 3), ds.X_train, data.one_hot(ds.y_train))
    check_cli(env, "labels-one-hot")


def test_one_hot_twice_is_refused():
    """The reverse direction: one-hot where integers are expected by `one_hot` itself."""
    y = data.one_hot(np.array([0, 2, 1]))
    with pytest.raises(DataError, match=r"one_hot expects integer labels of shape \(N,\), got "
                       r"shape \(3, 3\): the labels look one-hot already"):
        data.one_hot(y)


@pytest.mark.parametrize("value,case", [(np.nan, "features-nan"), (np.inf, "features-inf"),
                                        (-np.inf, None)])
def test_non_finite_features(env, value, case):
    ds = _iris()
    X = ds.X_train.copy()
    X[2, 1] = value
    with pytest.raises(DataError, match=r"^torch_models: features contain 1 non-finite values "
                       r"\(NaN or inf\), the first at row 2, column 1; drop or impute them first\.$"):
        _torch_train(ModelSpec("softmax", 4, 3), X, ds.y_train)
    if case:
        check_cli(env, case)


def test_empty_dataset(env):
    with pytest.raises(DataError, match=r"^torch_models: the dataset is empty \(0 samples\); "
                       r"provide at least one row\.$"):
        _torch_train(ModelSpec("softmax", 4, 3), np.zeros((0, 4), np.float32),
                     np.zeros(0, np.int64))
    check_cli(env, "empty-npz")
    check_cli(env, "empty-csv")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_batch_size_below_one_or_not_an_integer(env, bad):
    with pytest.raises(ConfigError, match=r"^batch size must be (at least 1|an integer), got "):
        TrainSpec(OptimizerSpec("sgd", lr=0.1), batch_size=bad)
    check_cli(env, "batch-size-0")


def test_batch_size_above_the_number_of_samples_is_one_full_batch_per_epoch():
    ds = _iris()
    spec = ModelSpec("softmax", 4, 3)
    big = _torch_train(spec, ds.X_train, ds.y_train, epochs=3, batch_size=1000)
    full = _torch_train(spec, ds.X_train, ds.y_train, epochs=3, batch_size=len(ds.X_train),)
    assert len(big.losses) == 3  # one step per epoch
    assert np.array_equal(big.losses, full.losses)
    for k in big.weights:
        assert np.array_equal(big.weights[k], full.weights[k])
    r = zoo(*TRAIN, "--dataset", "iris", "--batch-size", "1000", "--epochs", "3")
    assert r.returncode == 0 and zoo_lines(r.stderr) == [], r.stderr
    assert r.stdout.splitlines()[0] == ("batch size 1000 > 120 training samples: one full batch "
                                        "per epoch (full-batch gradient descent)")
    assert "torch softmax on iris: 3 steps" in r.stdout


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_epochs_below_one(env, bad):
    with pytest.raises(ConfigError, match=rf"^epochs must be an integer >= 1, got {bad!r}\.$"):
        TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=bad)
    check_cli(env, "epochs-0")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_learning_rate_not_positive_finite(env, bad):
    with pytest.raises(ConfigError, match=r"^learning rate must be a positive finite number, "
                       rf"got {bad!r}; pass e\.g\. --lr 0\.01\.$"):
        OptimizerSpec("sgd", lr=bad)
    check_cli(env, "lr-negative")
    check_cli(env, "lr-nan")


def test_unknown_names_suggest_the_closest(env):
    cases = [(lambda: model_spec_for("softmx", 4, 3), "model 'softmx'. Did you mean 'softmax'?"),
             (lambda: parse_frameworks("keras,trch"), "framework 'trch'. Did you mean 'torch'?"),
             (lambda: OptimizerSpec("adm", lr=0.1), "optimizer 'adm'. Did you mean 'adam'?"),
             (lambda: data.load("irs"), "dataset 'irs'. Did you mean 'iris'?")]
    for make, message in cases:
        with pytest.raises(UnknownNameError) as info:
            make()
        assert str(info.value).startswith(f"unknown {message} Known "), str(info.value)
    for case in ("unknown-model", "unknown-framework", "unknown-optimizer", "unknown-dataset",
                 "framework-not-in-process"):
        check_cli(env, case)


def test_csv_problems(env):
    d, files, _ = env
    for name, target, message in [
        ("ok.csv", "y", r": no column named 'y'; the columns are a, b, label\. Pass one of them "
                        r"as --target\.$"),
        ("nonnumeric.csv", "label", r": line 3, column 'b' holds 'x', which is not a number; "
                                    r"every cell must be numeric\.$"),
        ("ragged.csv", "label", r": line 3 has 2 fields but the header has 3; every row needs "
                                r"one value per column\.$"),
    ]:
        with pytest.raises(DataError, match=message):
            data.load(csv=files[name], target=target)
    for case in ("csv-missing-target", "csv-non-numeric", "csv-ragged"):
        check_cli(env, case)


def test_npz_without_X_or_y(env):
    d, files, _ = env
    with pytest.raises(DataError, match=r"has no array named 'X' \(it holds features, y\)"):
        data.load(npz=files["noX.npz"])
    with pytest.raises(DataError, match=r"has no array named 'y' \(it holds X, labels\)"):
        data.load(npz=files["noy.npz"])
    check_cli(env, "npz-without-X")
    check_cli(env, "npz-without-y")


def test_missing_truncated_and_corrupt_data_files(env, tmp_path):
    d, files, _ = env
    with pytest.raises(DataNotFoundError, match=r"absent\.npz: no such file"):
        data.load(npz=d / "absent.npz")
    with pytest.raises(DataError, match=r"not a readable \.npz archive \(BadZipFile"):
        data.load(npz=files["truncated.npz"])
    with pytest.raises(DataNotFoundError, match=r"^MNIST files not found; looked in "):
        data.load("mnist10k", data_dir=d / "nothing", download=False)
    idx = tmp_path / "images-idx3-ubyte"  # a raw IDX file cut short (no checksum to catch it)
    idx.write_bytes(b"\x00\x00\x08\x03" + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2
                    + bytes(7))
    with pytest.raises(DataError, match=r"IDX header promises \(3, 2, 2\) \(12 bytes of data\) "
                       r"but the file holds 7; it is truncated or corrupt"):
        data.read_idx(idx)
    for case in ("missing-file", "truncated-npz", "missing-mnist", "truncated-mnist"):
        check_cli(env, case)


def test_checksum_mismatch(env):
    d, _, _ = env
    with pytest.raises(ChecksumError, match=r"mnist\.npz: SHA-256 [0-9a-f]{64} does not match the "
                       r"published 731c5ac6.*; the file is corrupt or not the original: delete it "
                       r"and download it again\.$"):
        data.load("mnist10k", data_dir=d / "fake", download=False)
    check_cli(env, "checksum-mismatch")


def test_weights_for_another_model_or_other_shapes(env):
    _, files, _ = env
    with pytest.raises(DataError, match=r"does not fit model 'mlp' of its sidecar"):
        interchange.load(files["other.pt"])
    with pytest.raises(DataError, match=r"does not fit model 'softmax' of its sidecar"):
        interchange.load(files["shape.pt"])
    with pytest.raises(DataError, match=r"is not a torch state_dict that loads safely"):
        interchange.load(files["corrupt.pt"])
    for case in ("weights-other-model", "weights-other-shapes", "weights-corrupt"):
        check_cli(env, case)


def test_a_pickle_where_weights_or_data_are_expected_is_never_unpickled(env):
    d, files, _ = env
    with pytest.raises(DataError, match=r"is not a torch state_dict that loads safely "
                       r"\(torch\.load\(weights_only=True\) refused it"):
        interchange.load(files["evil.pt"])
    with pytest.raises(DataError, match=r"a pickle, which is never loaded for safety"):
        data.load(npz=files["pickled.npz"])
    for case in ("pickle-as-torch-weights", "pickle-as-keras-weights", "pickle-as-npz-data"):
        check_cli(env, case)
    # Touch.__reduce__ would have created these files had anything unpickled the payloads
    assert not [p.name for p in d.glob("unpickled-*")]
    assert pickle.loads(files["evil.pt"].read_bytes()) is None  # the payload does work
    assert (d / "unpickled-pt").exists()


# ----------------------------------------------------------------------------- images
def _never_written(d: Path) -> None:
    """Bad input writes nothing: no report, no weights."""
    assert not [p.name for p in d.glob("never*")]


def test_image_model_on_flat_data(env):
    from zoo.commands.compare import spec_for_dataset

    with pytest.raises(ConfigError) as info:
        spec_for_dataset("cnn", _iris())
    assert "zoo compare: error: " + str(info.value) == FLAT
    check_cli(env, "image-model-on-flat-data")
    check_cli(env, "image-weights-on-flat-data")
    _never_written(env[0])


def test_images_smaller_than_the_model_needs(env):
    """LeNet on the 8x8 digits: its second 5x5 'valid' convolution would get a 4x4 map; the
    message names the smallest size it takes (`zoo.specs.minimum_size`: 12x12) and the image
    models that fit."""
    from helpers import load

    from zoo.commands.compare import spec_for_dataset
    from zoo.specs import minimum_size

    digits = load("digits")
    assert minimum_size(model_spec_for("lenet", 64, 10, input_shape=(8, 8, 1))) == 12
    assert minimum_size(model_spec_for("cnn", 64, 10, input_shape=(8, 8, 1))) == 2
    with pytest.raises(ConfigError) as info:
        spec_for_dataset("lenet", digits)
    assert str(info.value) == TOO_SMALL
    check_cli(env, "images-too-small")
    _never_written(env[0])


def test_kernel_larger_than_its_input(env):
    _, files, _ = env
    from zoo.commands.compare import spec_for_dataset

    tiny = data.load(npz=files["tiny.npz"])
    assert tiny.image_shape == (3, 3, 1) and tiny.n_classes == 3
    with pytest.raises(ConfigError) as info:
        spec_for_dataset("lenet", tiny)
    assert str(info.value) == KERNEL
    assert spec_for_dataset("cnn", tiny).input_shape == (3, 3, 1)  # the model it suggests fits
    check_cli(env, "kernel-larger-than-input")


def test_init_weights_for_another_channel_count(env):
    d, files, _ = env
    from zoo.commands.compare import load_init, spec_for_dataset

    rgb = data.load(npz=files["rgb.npz"])
    spec = spec_for_dataset("cnn", rgb)
    assert spec.input_shape == (8, 8, 3)
    with pytest.raises(ConfigError) as info:
        load_init(str(files["cnn1.npz"]), spec, rgb.name, "float32")
    assert str(info.value) == _fill(CHANNELS, files, d)
    check_cli(env, "init-channels")
    _never_written(d)


def test_init_weights_of_another_model_or_other_data(env):
    d, files, _ = env
    from helpers import load

    from zoo.commands.compare import load_init, spec_for_dataset

    with pytest.raises(ConfigError) as info:
        load_init(str(files["mlp.npz"]), spec_for_dataset("softmax", _iris()), "iris", "float32")
    assert str(info.value) == _fill(OTHER_MODEL, files, d)
    with pytest.raises(ConfigError, match=r"holds a softmax for input 4 and 3 outputs but "
                       r"dataset 'digits' needs input 64 and 10 outputs"):
        load_init(str(files["w.pt"]), spec_for_dataset("softmax", load("digits")), "digits",
                  "float32")
    # weights that fit are taken as they are, in the run's dtype
    w = load_init(str(files["w.pt"]), spec_for_dataset("softmax", _iris()), "iris", "float64")
    _, saved = interchange.load(files["w.pt"])
    assert list(w) == ["dense_0/kernel", "dense_0/bias"]
    assert all(w[k].dtype == np.float64 and np.array_equal(w[k], saved[k]) for k in w)
    check_cli(env, "init-other-model")
    check_cli(env, "init-other-shapes")
    _never_written(d)


def test_sequence_inputs(env):
    """Token ids outside the vocabulary, a sequence model on flat data, a token model without
    tokens, ragged sequences: one line each, exit 2, nothing written."""
    from zoo.specs import check_inputs

    spec = model_spec_for("embedding_gru", 6, 3, vocab=12)
    with pytest.raises(ConfigError, match=r"^x: token id 2.5 at sample 0, position 1 is not in "
                                          r"the vocabulary \[0, 12\)"):
        check_inputs(spec, np.array([[1, 2.5, 3, 4, 5, 6]]), what="x")
    with pytest.raises(ConfigError, match="model 'lstm' reads images row by row but the data "
                                          "has flat features"):
        model_spec_for("lstm", 4, 3)
    for case in ("token-outside-vocabulary", "sequence-model-on-flat-data",
                 "token-model-without-tokens", "ragged-sequences"):
        check_cli(env, case)
    _never_written(env[0])
