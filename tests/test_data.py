"""The shared data module: IDX parsing, checksums, datasets, split, standardisation, one-hot,
the batch order and every validation error."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo import data
from zoo.errors import ChecksumError, ConfigError, DataError, DataNotFoundError, UnknownNameError


def write_idx(path, array: np.ndarray, *, gz: bool = True, magic: bytes | None = None,
              truncate: int = 0) -> None:
    header = magic or bytes([0, 0, 0x08, array.ndim])
    raw = header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    raw = raw[:len(raw) - truncate] if truncate else raw
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_read_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    p = tmp_path / ("x.idx.gz" if gz else "x.idx")
    write_idx(p, images, gz=gz)
    out = data.read_idx(p)
    assert out.shape == (5, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_read_idx_labels(tmp_path):
    labels = np.array([7, 2, 1, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "y.gz", labels)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "y.gz"), labels)


def test_read_idx_bad_magic(tmp_path):
    p = tmp_path / "bad.gz"
    write_idx(p, np.zeros((2, 2), np.uint8), magic=b"\x50\x4b\x03\x04")
    with pytest.raises(DataError, match=r"not an IDX file \(bad magic number 504b0304\)"):
        data.read_idx(p)


def test_read_idx_truncated(tmp_path):
    p = tmp_path / "short.gz"
    write_idx(p, np.zeros((3, 4, 4), np.uint8), truncate=5)
    with pytest.raises(DataError, match=r"promises \(3, 4, 4\) \(48 bytes of data\) but the file holds 43"):
        data.read_idx(p)


def test_read_idx_corrupt_gzip(tmp_path):
    p = tmp_path / "corrupt.gz"
    full = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 1000) + bytes(1000))
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.read_idx(p)


def test_read_idx_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such file"):
        data.read_idx(tmp_path / "nope.gz")


def test_checksum_mismatch(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    assert data.sha256sum(p) == hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(ChecksumError, match="does not match the published 00"):
        data.verify_sha256(p, "00" * 32)


def test_mnist_dir_with_wrong_checksum(tmp_path):
    # Structurally valid IDX files that are not the published ones must be refused.
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz: SHA-256"):
        data.load("mnist10k", data_dir=tmp_path)


def test_mnist_missing_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        data.load("mnist10k", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "mnist.npz" in msg and "--data-dir" in msg


def _offline_mirror(monkeypatch, tmp_path, n=2100):
    """A file:// stand-in for Keras's mnist.npz mirror, an empty Keras cache and no shared copy."""
    rng = np.random.default_rng(0)
    served = tmp_path / "mirror" / "mnist.npz"
    served.parent.mkdir()
    np.savez(served, x_test=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
             y_test=np.arange(n) % 10)
    monkeypatch.setattr(data, "MNIST_NPZ_URL", served.as_uri())
    monkeypatch.setitem(data.MNIST_SHA256, "mnist.npz", data.sha256sum(served))
    monkeypatch.setattr(data, "_repo_shared_mnist", lambda: tmp_path / "no-shared")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    return served


def test_mnist_download_is_verified_and_kept(monkeypatch, tmp_path):
    served = _offline_mirror(monkeypatch, tmp_path)
    ds = data.load("mnist10k")
    kept = tmp_path / "keras" / "datasets" / "mnist.npz"
    assert ds.source == str(kept) and (len(ds.X_train), len(ds.X_test)) == (100, 2000)
    assert kept.read_bytes() == served.read_bytes() and kept.stat().st_mode & 0o777 == 0o644
    served.unlink()  # the second load reads the kept copy
    assert data.load("mnist10k").source == str(kept)


def test_mnist_download_with_a_wrong_checksum_keeps_nothing(monkeypatch, tmp_path):
    served = _offline_mirror(monkeypatch, tmp_path)
    monkeypatch.setitem(data.MNIST_SHA256, "mnist.npz", "0" * 64)
    with pytest.raises(ChecksumError) as err:
        data.load("mnist10k")
    got = data.sha256sum(served)
    assert str(err.value) == (
        f"the download of {served.as_uri()} has SHA-256 {got}, not the published {'0' * 64}, "
        f"so it was not kept; try again, or put a copy you trust in {tmp_path / 'keras' / 'datasets'}.")
    assert list((tmp_path / "keras" / "datasets").iterdir()) == []


def test_mnist_download_failure_says_what_to_do(monkeypatch, tmp_path):
    served = _offline_mirror(monkeypatch, tmp_path)
    served.unlink()  # the mirror is unreachable
    with pytest.raises(DataNotFoundError, match=r"^MNIST files not found \(looked in .*\) and "
                       r"could not download file://.*mnist\.npz \(.*\)\. Pass --data-dir"):
        data.load("mnist10k")
    assert list((tmp_path / "keras" / "datasets").iterdir()) == []


def test_mnist_without_a_copy_or_download_says_where_it_looked(monkeypatch, tmp_path):
    _offline_mirror(monkeypatch, tmp_path)
    with pytest.raises(DataNotFoundError, match=r"MNIST files not found; looked in .*no-shared.*"
                       r"Pass --data-dir \(or set ZOO_DATA_DIR\)"):
        data.load("mnist10k", download=False)


def test_mnist_data_dir_does_not_exist(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        data.load("mnist10k", data_dir=tmp_path / "nowhere")


def test_real_t10k_checksums_and_shape(shared_mnist):
    for line in (shared_mnist / "SHA256SUMS").read_text().split("\n"):
        if line.strip():
            digest, name = line.split()
            assert data.sha256sum(shared_mnist / name) == digest == data.MNIST_SHA256[name]
    images = data.read_idx(shared_mnist / "t10k-images-idx3-ubyte.gz")
    labels = data.read_idx(shared_mnist / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first t10k labels
    ds = data.load("mnist10k", data_dir=shared_mnist)
    assert (len(ds.X_train), len(ds.X_test), ds.n_features, ds.n_classes) == (8000, 2000, 784, 10)
    np.testing.assert_array_equal(ds.y_test, labels[8000:])  # the fixed split: file order
    np.testing.assert_array_equal(ds.X_test, (images[8000:].reshape(2000, -1) / 255.0).astype(np.float32))
    assert ds.image_shape == (28, 28, 1) and 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0


def test_mnist_from_keras_style_npz(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    y = np.arange(50) % 10
    np.savez(tmp_path / "my_mnist.npz", x_test=x, y_test=y)
    (tmp_path / "my_mnist.npz").rename(tmp_path / "mnist_copy.npz")
    # a user's own copy under another name is read through --npz with X/y, and Keras's
    # mnist.npz is verified against its published checksum
    np.savez(tmp_path / "mnist.npz", x_test=x, y_test=y)
    with pytest.raises(ChecksumError, match="mnist.npz: SHA-256"):
        data.load("mnist10k", data_dir=tmp_path)


def _fake_mnist(monkeypatch, n_train: int, n_test: int) -> None:
    """Stand-in MNIST arrays (each image filled with its own index mod 256) behind the finder."""
    def fake(data_dir, parts, download):
        out = {}
        for p, n in (("train", n_train), ("test", n_test)):
            if p in parts:
                out[f"x_{p}"] = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None],
                                                (n, 28, 28))
                out[f"y_{p}"] = (np.arange(n) * 7) % 10
        return out, "fake"
    monkeypatch.setattr(data, "_find_mnist", fake)


def test_mnist10k_fixed_split_is_the_last_2000_in_file_order(monkeypatch):
    _fake_mnist(monkeypatch, 0, 2600)
    ds = data.load("mnist10k", seed=5)  # the seed does not move a fixed split
    assert (len(ds.X_train), len(ds.X_test)) == (600, 2000)
    np.testing.assert_array_equal(ds.X_train[:, 0] * 255, np.arange(600) % 256)
    np.testing.assert_array_equal(ds.X_test[:, 0] * 255, np.arange(600, 2600) % 256)
    np.testing.assert_array_equal(ds.y_test, (np.arange(600, 2600) * 7) % 10)
    assert ds.summary()["split"] == "the test set's first 8,000 images / its last 2,000, in file order"


def test_mnist_fixed_split_is_the_official_one(monkeypatch):
    _fake_mnist(monkeypatch, 300, 10_000)
    ds = data.load("mnist")
    assert (len(ds.X_train), len(ds.X_test)) == (300, 10_000)
    np.testing.assert_array_equal(ds.X_test[:, 0] * 255, np.arange(10_000) % 256)


def test_mnist10k_seeded_split_on_request(monkeypatch):
    _fake_mnist(monkeypatch, 0, 2600)
    a = data.load("mnist10k", split="seeded", seed=0)
    b = data.load("mnist10k", split="seeded", seed=1, test_size=0.5)
    assert (len(a.X_test), len(b.X_test)) == (520, 1300)
    assert np.bincount(a.y_test).tolist() == [52] * 10  # stratified
    assert a.summary()["split"] == "seeded (seed 0, 0.2 held out, stratified by class)"
    assert not np.array_equal(a.X_test[:, 0], data.load("mnist10k", split="seeded", seed=1).X_test[:, 0])


def test_fixed_split_errors(monkeypatch):
    _fake_mnist(monkeypatch, 0, 1500)
    with pytest.raises(DataError, match=r"^fake: 1500 samples, but the fixed split of mnist10k "
                       r"takes the last 2,000 as its test set; load the complete files\.$"):
        data.load("mnist10k")
    with pytest.raises(ConfigError, match=r"^test_size applies to the seeded split, but mnist10k "
                       r"uses its fixed split; pass split='seeded' to choose the test share\.$"):
        data.load("mnist10k", test_size=0.3)
    with pytest.raises(ConfigError, match=r"^split must be 'fixed' or 'seeded', got 'random'\.$"):
        data.load("iris", split="random")
    with pytest.raises(ConfigError, match=r"^dataset 'iris' has no fixed split \(only mnist, "
                       r"mnist10k have one\); use the seeded split\.$"):
        data.load("iris", split="fixed")


# ----------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name,n,features,classes", [
    ("iris", 150, 4, 3), ("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2),
])
def test_bundled_datasets(name, n, features, classes):
    ds = data.load(name)
    assert len(ds.X_train) + len(ds.X_test) == n
    assert len(ds.X_test) == int(np.ceil(0.2 * n))
    assert ds.n_features == features and ds.n_classes == classes
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    # standardisation fitted on the train split only
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-5)
    assert abs(ds.X_test.mean()) > 1e-6


def test_image_datasets_keep_x_flat_and_give_images_in_the_model_input_shape():
    """digits are 8x8x1 images: X stays (N, 64), `inputs(spec)` gives (N, 8, 8, 1) NHWC for an
    image model (pixel (r, c) of sample i is feature 8r + c) and the flat X for a dense one."""
    from zoo.specs import model_spec_for

    ds = data.load("digits")
    assert ds.image_shape == (8, 8, 1) and ds.X_train.shape == (1437, 64)
    assert ds.summary()["image_shape"] == [8, 8, 1]
    cnn = model_spec_for("cnn", 64, 10, input_shape=ds.image_shape)
    images = ds.inputs(cnn, "test")
    assert images.shape == (360, 8, 8, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[5, 3, 6, 0], ds.X_test[5, 8 * 3 + 6])
    assert ds.inputs(model_spec_for("softmax", 64, 10)) is ds.X_train
    assert data.load("iris").image_shape is None


def test_inputs_refuses_data_the_model_cannot_take():
    from zoo.specs import model_spec_for

    iris, digits = data.load("iris"), data.load("digits")
    with pytest.raises(ConfigError, match=r"^model 'cnn' takes images but dataset 'iris' has 4 "
                       r"flat features; use an image dataset \(digits, mnist, mnist10k\) or an "
                       r"NPZ of \(N, H, W\) or \(N, H, W, C\) images\.$"):
        iris.inputs(model_spec_for("cnn", 4, 3, input_shape=(2, 2, 1)))
    with pytest.raises(ConfigError, match=r"^model 'cnn' was built for 16x4x1 images but dataset "
                       r"'digits' has 8x8x1 images; build the model spec from the dataset's "
                       r"image shape\.$"):
        digits.inputs(model_spec_for("cnn", 64, 10, input_shape=(16, 4, 1)))
    with pytest.raises(ConfigError, match=r"^the model expects 4 features but the dataset "
                       r"'digits' has 64\.$"):
        digits.inputs(model_spec_for("softmax", 4, 10))


@pytest.mark.parametrize("shape,image_shape", [((30, 5, 6), (5, 6, 1)), ((30, 5, 6, 3), (5, 6, 3)),
                                               ((30, 7), None)])
def test_npz_images_are_kept_flat_with_their_shape(tmp_path, shape, image_shape):
    rng = np.random.default_rng(0)
    X = rng.normal(size=shape)
    np.savez(tmp_path / "imgs.npz", X=X, y=np.arange(30) % 3)
    ds = data.load(npz=tmp_path / "imgs.npz", preprocess="none", dtype="float64")
    assert ds.image_shape == image_shape and ds.X_train.shape == (24, int(np.prod(shape[1:])))
    # the flat features are the pixels in H, W, C order: the rows come back unchanged
    rows = {tuple(r) for r in X.reshape(30, -1)}
    assert all(tuple(r) in rows for r in ds.X_train)


def test_npz_of_another_rank_is_refused(tmp_path):
    np.savez(tmp_path / "five.npz", X=np.zeros((4, 2, 2, 2, 2)), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"^five: X has shape \(4, 2, 2, 2, 2\); expected "
                       r"\(N, features\), \(N, H, W\) images or \(N, H, W, C\) images\.$"):
        data.load(npz=tmp_path / "five.npz")


def test_icecream_is_seed_002_model():
    ds = data.load("icecream", preprocess="none", dtype="float64")
    X = np.concatenate([ds.X_train, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert y.shape[1] == 1 and ds.task == "regression"
    A = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(A, y[:, 0], rcond=None)[0]
    np.testing.assert_allclose(coef, [10, -2, 20, 4], rtol=0.02)


def test_float64_on_request():
    ds = data.load("iris", dtype="float64")
    assert ds.X_train.dtype == np.float64


def test_split_is_deterministic_and_stratified():
    a, b = data.load("iris", seed=3), data.load("iris", seed=3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert np.bincount(a.y_test).tolist() == [10, 10, 10]
    c = data.load("iris", seed=4)
    assert not np.array_equal(a.X_train, c.X_train)


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'irsi'\. Did you mean 'iris'\?"):
        data.load("irsi")


# ----------------------------------------------------------------------------- user files
def test_csv_roundtrip(tmp_path):
    p = tmp_path / "d.csv"
    rows = ["a,b,label"] + [f"{i},{i * 2},{i % 2}" for i in range(20)]
    p.write_text("\n".join(rows) + "\n")
    ds = data.load(csv=p, target="label", preprocess="none")
    assert ds.task == "binary" and ds.n_features == 2 and ds.feature_names == ("a", "b")
    assert len(ds.X_train) == 16


@pytest.mark.parametrize("content,target,message", [
    ("a,b\n1,2\n", "y", r"no column named 'y'; the columns are a, b"),
    ("a,y\n1,2\n3,x\n", "a", r"line 3, column 'y' holds 'x', which is not a number"),
    ("a,y\n1,2\n3\n", "y", r"line 3 has 1 fields but the header has 2"),
    ("a,y\n", "y", r"the dataset is empty"),
], ids=["missing-target", "non-numeric", "ragged", "empty"])
def test_csv_errors(tmp_path, content, target, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=message):
        data.load(csv=p, target=target)


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"no array named 'y'"):
        data.load(npz=tmp_path / "d.npz")


def test_npz_with_pickle_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="never loaded for safety"):
        data.load(npz=tmp_path / "d.npz")


def test_npz_corrupt(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        data.load(npz=tmp_path / "d.npz")


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("X,y,task,n_classes,message", [
    (np.zeros((3, 2)), np.zeros(4, int), "classification", None, r"3 feature rows but 4 targets"),
    (np.array([[0.0, np.nan]]), np.zeros(1, int), "classification", None, r"non-finite values .* row 0, column 1"),
    (np.array([[np.inf]]), np.zeros(1, int), "classification", None, r"non-finite"),
    (np.zeros((0, 2)), np.zeros(0, int), "classification", None, r"the dataset is empty"),
    (np.zeros((2, 1)), np.array([0, 3]), "classification", 3, r"labels must be integers in \[0, 3\); found values from 0 to 3"),
    (np.zeros((2, 1)), np.array([-1, 0]), "classification", None, r"found values from -1"),
    (np.zeros((2, 1)), np.array([0.5, 1.0]), "classification", None, r"non-integer values such as 0.5"),
    (np.zeros((2, 1)), np.eye(2), "classification", None, r"looks one-hot"),
    (np.zeros((2,)), np.zeros(2), "classification", None, r"must be 2-D"),
], ids=["shape", "nan", "inf", "empty", "label-range", "negative", "non-integer", "one-hot", "1d"])
def test_validation_errors(X, y, task, n_classes, message):
    with pytest.raises(DataError, match=message):
        data.validate_arrays(X, y, task, n_classes)


@pytest.mark.parametrize("bs", [0, -3, 2.5, True])
def test_batch_size_errors(bs):
    with pytest.raises(ConfigError, match="batch size must be"):
        data.batch_order(10, bs, 0, 0)


# ----------------------------------------------------------------------------- one-hot
def test_one_hot_matches_to_categorical_semantics():
    out = data.one_hot(np.array([0, 2, 1]), 3)
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1]])
    assert out.dtype == np.float32


def test_one_hot_refuses_one_hot():
    y = data.one_hot(np.array([0, 1, 2]))
    with pytest.raises(DataError, match="look one-hot already"):
        data.one_hot(y)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=50))
def test_one_hot_round_trip(labels):
    y = np.array(labels)
    oh = data.one_hot(y, 10)
    assert oh.shape == (len(y), 10)
    np.testing.assert_array_equal(oh.sum(axis=1), 1)
    np.testing.assert_array_equal(oh.argmax(axis=1), y)


# ----------------------------------------------------------------------------- split / scale
@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 200), classes=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_split_sizes_and_classes(n, classes, seed):
    y = np.arange(n) % classes
    X = np.arange(n, dtype=float)[:, None]
    Xtr, Xte, ytr, yte = data.split_arrays(X, y, seed=seed)
    assert len(Xte) == int(np.ceil(0.2 * n)) and len(Xtr) + len(Xte) == n
    assert sorted(np.concatenate([Xtr, Xte])[:, 0].tolist()) == list(range(n))
    if len(yte) >= classes:  # stratified: every class in both parts
        assert set(yte.tolist()) == set(range(classes)) == set(ytr.tolist())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000))
def test_standardize_uses_train_statistics(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(3, 2, (50, 3)), rng.normal(3, 2, (20, 3))
    a[:, 2] = 1.0  # a constant column keeps std 1 instead of dividing by zero
    sa, sb = data.standardize(a, b)
    np.testing.assert_allclose(sa[:, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(sa[:, :2].std(0), 1, atol=1e-12)
    np.testing.assert_allclose(sb, (b - a.mean(0)) / np.where(a.std(0) == 0, 1, a.std(0)))


# ----------------------------------------------------------------------------- batch order
@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), bs=st.integers(1, 64), seed=st.integers(0, 99), epoch=st.integers(0, 5))
def test_batch_order_covers_every_index_once(n, bs, seed, epoch):
    batches = data.batch_order(n, bs, seed, epoch)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert all(len(b) == bs for b in batches[:-1]) and 1 <= len(batches[-1]) <= bs
    assert len(batches) == -(-n // bs)


def test_batch_order_deterministic_and_changes_across_epochs():
    a = np.concatenate(data.batch_order(100, 32, seed=5, epoch=0))
    b = np.concatenate(data.batch_order(100, 32, seed=5, epoch=0))
    c = np.concatenate(data.batch_order(100, 32, seed=5, epoch=1))
    d = np.concatenate(data.batch_order(100, 32, seed=6, epoch=0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    np.testing.assert_array_equal(np.concatenate(data.batch_order(10, 4, 0, 0, shuffle=False)), np.arange(10))


def test_importing_zoo_imports_no_framework():
    code = ("import sys, zoo, zoo.data, zoo.specs, zoo.reference, zoo.optimizers, zoo.cli;"
            "zoo.cli.build_parser();"
            "bad=[m for m in ('tensorflow','torch','keras') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
