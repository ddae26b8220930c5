"""Accuracy floors on the real MNIST test set (mnist10k: its first 8,000 images train, its last
2,000 test) in every framework; they run where the data is (about 25 s on 2 cores).

The floors: softmax >= 0.91 with SGD lr 0.5 for 10 epochs, the MLP >= 0.93 with
Adam lr 1e-3 for 10 epochs, and seed 004's own Adam lr 1e-4 for 20 epochs reported beside it.
They hold on mnist10k's fixed split. On a seeded stratified 8,000/2,000 draw of the same images
no linear softmax classifier reaches 0.91 at all (`test_seeded_split_is_at_the_linear_ceiling`
measures that ceiling with scikit-learn's solver), which is why mnist10k's default split is the
fixed one: the split anyone can rebuild by slicing, and the one the floors were first measured on.
"""

from __future__ import annotations

import importlib

import pytest
from conftest import SHARED_MNIST
from helpers import model_inputs, spec_for

from zoo import data
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights

PACKAGES = {"keras": "keras_models", "tf1": "tf1_compat", "torch": "torch_models"}


def _load(split: str) -> data.Dataset:
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST test set is not present at {SHARED_MNIST}")
    return data.load("mnist10k", data_dir=SHARED_MNIST, split=split)


@pytest.fixture(scope="module")
def mnist():
    return _load("fixed")


@pytest.fixture(scope="module")
def mnist_seeded():
    return _load("seeded")


def _fit(fw, model, ds, opt, epochs, batch_size=32):
    mod = importlib.import_module(f"{PACKAGES[fw]}.train")
    spec = spec_for(model, ds)
    ts = TrainSpec(opt, epochs=epochs, batch_size=batch_size)
    kw = {"steps_per_execution": -(-len(ds.X_train) // batch_size)} if fw == "keras" else {}
    h = mod.train(spec, ts, model_inputs(ds.X_train, spec), ds.y_train, init_weights(spec, 0),
                  **kw)
    return mod.evaluate(spec, h.weights, model_inputs(ds.X_test, spec), ds.y_test)["accuracy"]


def test_the_fixed_split(mnist):
    assert (len(mnist.X_train), len(mnist.X_test)) == (8000, 2000)
    assert mnist.split == data.FIXED_SPLITS["mnist10k"][1]


@pytest.mark.parametrize("fw", list(PACKAGES))
def test_softmax_floor(fw, mnist):
    acc = _fit(fw, "softmax", mnist, OptimizerSpec("sgd", lr=0.5), epochs=10)
    print(f"mnist10k softmax sgd 0.5 {fw}: {acc:.4f}")  # measured 0.9240 in all three
    assert acc >= 0.91


@pytest.mark.parametrize("fw", list(PACKAGES))
def test_mlp_floor(fw, mnist):
    acc = _fit(fw, "mlp", mnist, OptimizerSpec("adam", lr=1e-3), epochs=10)
    print(f"mnist10k mlp adam 1e-3 {fw}: {acc:.4f}")  # measured 0.9420 keras/torch, 0.9405 tf1
    assert acc >= 0.93


def test_mlp_with_the_seeds_learning_rate(mnist):
    # seed 004 trains with Adam lr 1e-4: slower, about 0.91 in 20 epochs
    acc = _fit("torch", "mlp", mnist, OptimizerSpec("adam", lr=1e-4), epochs=20)
    print(f"mnist10k mlp adam 1e-4 (seed 004) torch: {acc:.4f}")  # measured 0.9225
    assert acc >= 0.91


@pytest.mark.slow
@pytest.mark.parametrize("fw", list(PACKAGES))
def test_lenet_floor(fw, mnist):
    """LeNet-5, Adam lr 1e-3, batch 32, 10 epochs (floor 0.97)."""
    acc = _fit(fw, "lenet", mnist, OptimizerSpec("adam", lr=1e-3), epochs=10)
    print(f"mnist10k lenet adam 1e-3 {fw}: {acc:.4f}")  # measured keras 0.9850, tf1 0.9835, torch 0.9800
    assert acc >= 0.97


@pytest.mark.slow
@pytest.mark.parametrize("fw", list(PACKAGES))
def test_nielsen_floor(fw, mnist):
    """Seed 001's network as the book trains it: SGD eta 3.0, batch 10, 30 epochs, the
    quadratic cost, N(0, 1) initial weights (floor 0.90)."""
    acc = _fit(fw, "nielsen", mnist, OptimizerSpec("sgd", lr=3.0), epochs=30, batch_size=10)
    print(f"mnist10k nielsen sgd 3.0 batch 10 {fw}: {acc:.4f}")  # measured keras/tf1 0.9345, torch 0.9375
    assert acc >= 0.90


def test_seeded_split_is_at_the_linear_ceiling(mnist_seeded):
    """On the seeded split the best L2-regularised softmax regression that scikit-learn's lbfgs
    finds over a grid of C reaches 0.908, and our SGD softmax comes within a point of it."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    ds = mnist_seeded
    best = 0.0
    for c in (0.03, 0.1, 0.3, 1.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=300).fit(ds.X_train, ds.y_train)
        best = max(best, clf.score(ds.X_test, ds.y_test))
    ours = _fit("torch", "softmax", ds, OptimizerSpec("sgd", lr=0.5), epochs=10)
    print(f"mnist10k seeded split: scikit-learn best {best:.4f}, ours {ours:.4f}")
    # measured 0.9080 (C = 0.1): the 0.91 floor cannot hold on this split (the bound leaves a
    # few images for other BLAS builds; the fixed split gives 0.924)
    assert best < 0.915
    assert ours >= best - 0.01  # measured 0.9050


@pytest.mark.slow
@pytest.mark.parametrize("fw", list(PACKAGES))
def test_cnn_bn_reaches_the_cnn(fw, mnist):
    """The cnn with BatchNorm after each convolution, trained as the cnn (SGD lr 0.1, batch
    32, 3 epochs), reaches at least the cnn's test accuracy and the floor 0.95, predicting with
    the moving statistics (inference mode)."""
    opt = OptimizerSpec("sgd", lr=0.1)
    plain = _fit(fw, "cnn", mnist, opt, epochs=3)
    bn = _fit(fw, "cnn_bn", mnist, opt, epochs=3)
    print(f"mnist10k sgd 0.1 3 epochs {fw}: cnn {plain:.4f}, cnn_bn {bn:.4f}")
    # measured: keras 0.9675 -> 0.9740, tf1 0.9675 -> 0.9755, torch 0.9680 -> 0.9735
    assert bn >= plain and bn >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("fw", list(PACKAGES))
@pytest.mark.parametrize("model,floor", [("lstm", 0.93), ("gru", 0.92)])
def test_recurrent_floor(fw, model, floor, mnist):
    """LSTM(64) and GRU(64) reading each 28x28 image as 28 steps of 28 pixels, Adam lr 1e-3,
    batch 32, 10 epochs (floors 0.93 and 0.92)."""
    acc = _fit(fw, model, mnist, OptimizerSpec("adam", lr=1e-3), epochs=10)
    print(f"mnist10k {model} adam 1e-3 10 epochs {fw}: {acc:.4f}")
    # measured: lstm keras 0.9635, tf1 0.9665, torch 0.9665; gru 0.9690 in each
    assert acc >= floor


@pytest.mark.parametrize("fw", list(PACKAGES))
def test_embedding_gru_learns_the_order_of_tokens(fw):
    """The tokens task's label is the first token mod 4 (chance 0.25; a bag of words cannot
    tell which token came first): embedding_gru with Adam lr 1e-2, batch 32, 5 epochs must
    reach 0.9 on the 400 held-out sequences in every framework. Needs no MNIST."""
    ds = data.load("tokens")
    acc = _fit(fw, "embedding_gru", ds, OptimizerSpec("adam", lr=1e-2), epochs=5)
    print(f"tokens embedding_gru adam 1e-2 5 epochs {fw}: {acc:.4f}")  # measured 1.0 in each
    assert acc >= 0.9


def test_a_bag_of_words_cannot_solve_the_tokens_task():
    """What makes `tokens` a sequence task: scikit-learn's logistic regression on each
    sequence's token counts (a bag of words, the order lost) stays near chance."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    ds = data.load("tokens")
    vocab = int(ds.vocab)

    def counts(X):
        return np.stack([np.bincount(row.astype(int), minlength=vocab) for row in X])

    clf = LogisticRegression(max_iter=2000).fit(counts(ds.X_train), ds.y_train)
    acc = clf.score(counts(ds.X_test), ds.y_test)
    print(f"tokens bag of words: {acc:.4f}")  # measured 0.415 (chance 0.25; embedding_gru 1.0)
    assert acc < 0.5
