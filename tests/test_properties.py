"""Property tests (hypothesis) of the loss functions, in the float64 numpy reference and in each
framework's own loss (the ones the models train with: torch `nn.CrossEntropyLoss`, Keras
`SparseCategoricalCrossentropy(from_logits=True)`, TF1 `tf1_compat.model.make_loss`), on random
logits and labels:

- softmax is invariant to shifting the logits by a constant and sums to 1;
- cross-entropy is non-negative and equals -log softmax at the label (reference);
- its gradient with respect to the logits is (y_hat - y) / N (mean over the batch);
- each framework's loss and gradient equal the reference's (float64: within 1e-12);
- one-hot made by each framework round-trips through argmax.

(`tests/test_data.py` already holds the data-module properties: one_hot round-trip, split sizes
and classes, standardisation statistics, batch-order coverage; they are not repeated here.)
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zoo import reference as ref
from zoo.data import one_hot
from zoo.specs import ModelSpec

TOL = 1e-12  # float64 everywhere


@st.composite
def batches(draw, max_n: int = 8, max_c: int = 6, bound: float = 30.0):
    """(logits (N, C) float64, integer labels (N,))."""
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(2, max_c))
    logits = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-bound, bound)))
    labels = np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return logits, labels


def expected_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d mean-CE / d logits = (softmax(logits) - one_hot(labels)) / N."""
    n, c = logits.shape
    return (ref.softmax(logits) - one_hot(labels, c, dtype="float64")) / n


shifts = st.floats(-100.0, 100.0)


# ----------------------------------------------------------------------------- numpy reference
@settings(max_examples=100, deadline=None)
@given(batches(), shifts)
def test_reference_softmax_shift_invariant_and_sums_to_one(batch, shift):
    logits, _ = batch
    p = ref.softmax(logits)
    np.testing.assert_allclose(ref.softmax(logits + shift), p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(p >= 0) and np.all(p <= 1)


@settings(max_examples=100, deadline=None)
@given(batches(), shifts)
def test_reference_cross_entropy_non_negative_and_shift_invariant(batch, shift):
    logits, labels = batch
    ce = ref.cross_entropy_with_logits(logits, labels)
    assert ce >= 0.0
    np.testing.assert_allclose(ref.cross_entropy_with_logits(logits + shift, labels), ce,
                               rtol=1e-9, atol=1e-9)
    per_sample = [ref.cross_entropy(one_hot(labels[i:i + 1], logits.shape[1], "float64")[0],
                                    ref.softmax(logits[i])) for i in range(len(labels))]
    np.testing.assert_allclose(ce, np.mean(per_sample), rtol=1e-9, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(batches(bound=5.0))
def test_reference_cross_entropy_gradient_is_y_hat_minus_y(batch):
    """Central differences of the reference loss (float64, h=1e-6: error ~1e-10)."""
    logits, labels = batch
    h = 1e-6
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (ref.cross_entropy_with_logits(up, labels)
                        - ref.cross_entropy_with_logits(down, labels)) / (2 * h)
    np.testing.assert_allclose(numeric, expected_grad(logits, labels), rtol=0, atol=1e-8)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_reference_hinge_and_binary_cross_entropy_non_negative(batch):
    logits, labels = batch
    assert ref.hinge_loss(logits, labels) >= 0.0
    assert ref.binary_cross_entropy_with_logits(logits[:, 0], labels % 2) >= 0.0


# ----------------------------------------------------------------------------- torch
def _torch_loss_and_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    from torch_models.model import make_loss

    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = make_loss(ModelSpec("softmax", 1, logits.shape[1]))(z, torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    return float(loss.item()), z.grad.numpy()


@settings(max_examples=100, deadline=None)
@given(batches(), shifts)
def test_torch_loss_properties(batch, shift):
    logits, labels = batch
    ce, grad = _torch_loss_and_grad(logits, labels)
    assert ce >= 0.0
    np.testing.assert_allclose(ce, ref.cross_entropy_with_logits(logits, labels), rtol=TOL,
                               atol=TOL)
    np.testing.assert_allclose(grad, expected_grad(logits, labels), rtol=0, atol=TOL)
    shifted, _ = _torch_loss_and_grad(logits + shift, labels)
    np.testing.assert_allclose(shifted, ce, rtol=1e-9, atol=1e-9)
    p = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits + shift), dim=1).numpy(), p,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=TOL)


@settings(max_examples=50, deadline=None)
@given(batches())
def test_torch_hinge_and_bce_match_reference_and_are_non_negative(batch):
    from torch_models.model import make_loss

    logits, labels = batch
    hinge = make_loss(ModelSpec("svm", 1, logits.shape[1]))
    bce = make_loss(ModelSpec("logistic", 1, 1))
    z = torch.from_numpy(logits)
    h = float(hinge(z, torch.from_numpy(labels.astype(np.int64))).item())
    assert h >= 0.0
    np.testing.assert_allclose(h, ref.hinge_loss(logits, labels), rtol=TOL, atol=TOL)
    t = (labels % 2).astype(np.float64).reshape(-1, 1)
    b = float(bce(z[:, :1], torch.from_numpy(t)).item())
    assert b >= 0.0
    np.testing.assert_allclose(b, ref.binary_cross_entropy_with_logits(logits[:, 0], t), rtol=TOL,
                               atol=TOL)


# ----------------------------------------------------------------------------- Keras
def _keras_loss_and_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    import tensorflow as tf

    from keras_models.model import make_loss
    from keras_models.train import floatx

    with floatx("float64"):
        loss_fn = make_loss(ModelSpec("softmax", 1, logits.shape[1]))
        z = tf.Variable(logits, dtype=tf.float64)
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.constant(labels.astype(np.int64)), z)
        grad = tape.gradient(loss, z)
    return float(loss.numpy()), grad.numpy()


@settings(max_examples=30, deadline=None)
@given(batches(), shifts)
def test_keras_loss_properties(batch, shift):
    import keras

    logits, labels = batch
    ce, grad = _keras_loss_and_grad(logits, labels)
    assert ce >= 0.0
    np.testing.assert_allclose(ce, ref.cross_entropy_with_logits(logits, labels), rtol=TOL,
                               atol=TOL)
    np.testing.assert_allclose(grad, expected_grad(logits, labels), rtol=0, atol=TOL)
    shifted, _ = _keras_loss_and_grad(logits + shift, labels)
    np.testing.assert_allclose(shifted, ce, rtol=1e-9, atol=1e-9)
    p = keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.convert_to_tensor(logits), axis=1))
    q = keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.convert_to_tensor(logits + shift),
                                                     axis=1))
    np.testing.assert_allclose(q, p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- TF1
def _tf1_loss_and_grad(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    import tensorflow as tf

    from tf1_compat.model import make_loss

    tf1 = tf.compat.v1
    tf1_loss = make_loss(ModelSpec("softmax", 1, logits.shape[1]))
    graph = tf.Graph()
    with graph.as_default():
        z = tf1.placeholder(tf.float64, (None, logits.shape[1]))
        y = tf1.placeholder(tf.int64, (None,))
        loss = tf1_loss(z, y)
        grad = tf1.gradients(loss, z)[0]
        prob = tf.nn.softmax(z)
    with tf1.Session(graph=graph) as sess:
        ce, g, p = sess.run([loss, grad, prob], {z: logits, y: labels.astype(np.int64)})
    return float(ce), g, p


@settings(max_examples=20, deadline=None)
@given(batches(), shifts)
def test_tf1_loss_properties(batch, shift):
    logits, labels = batch
    ce, grad, p = _tf1_loss_and_grad(logits, labels)
    assert ce >= 0.0
    np.testing.assert_allclose(ce, ref.cross_entropy_with_logits(logits, labels), rtol=TOL,
                               atol=TOL)
    np.testing.assert_allclose(grad, expected_grad(logits, labels), rtol=0, atol=TOL)
    shifted, _, q = _tf1_loss_and_grad(logits + shift, labels)
    np.testing.assert_allclose(shifted, ce, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(q, p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- one-hot
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=40))
def test_framework_one_hot_round_trips_and_matches_zoo(labels):
    import keras
    import tensorflow as tf

    y = np.asarray(labels)
    c = int(y.max()) + 1
    zoo_oh = one_hot(y, c)
    for oh in (torch.nn.functional.one_hot(torch.from_numpy(y), c).numpy(),
               keras.utils.to_categorical(y, c),
               tf.one_hot(y, c).numpy()):
        assert oh.shape == (len(y), c)
        assert np.array_equal(oh.argmax(axis=1), y)
        assert np.array_equal(oh, zoo_oh)
