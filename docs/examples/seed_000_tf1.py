# ruff: noqa: B007  (the seed's code, kept as written)
# Seed 000's TF1 session code, run on TensorFlow 2.21. As written it fails twice: `tf.Session`
# and `tf.train.GradientDescentOptimizer` live in `tf.compat.v1` now, and
# `tf.multiply(-10, w)` raises a TypeError (int32 -10 against float32 w). Ported: the TF1 names
# through `tf1 = tf.compat.v1`, a float -10.0, and a graph of its own instead of
# `disable_eager_execution()` (which would break Keras for the rest of the process).
import numpy as np
import tensorflow as tf

assert not hasattr(tf, "Session") and not hasattr(tf.train, "GradientDescentOptimizer")
tf1 = tf.compat.v1

with tf.Graph().as_default():
    w = tf.Variable(0, dtype=tf.float32)
    try:
        tf.add(w**2, tf.multiply(-10, w), 25)  # the seed's line, as written
        raise AssertionError("expected a TypeError")
    except TypeError as err:
        assert "does not match type int32" in str(err)
    cost = tf.add(tf.add(w**2, tf.multiply(-10.0, w)), 25)
    train = tf1.train.GradientDescentOptimizer(0.01).minimize(cost)
    init = tf1.global_variables_initializer()

    with tf1.Session() as session:
        session.run(init)
        assert session.run(w) == 0.0  # seed: 0.0
        session.run(train)
        assert session.run(w) == np.float32(0.099999994)  # seed: 0.1
        for i in range(1000):
            session.run(train)
        w_final = session.run(w)

# seed: 4.9999. float32 gradient descent stalls at 4.9999886, 1.1e-5 below 5.
assert w_final == np.float32(4.9999886)
