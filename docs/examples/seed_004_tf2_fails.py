# ruff: noqa: F401  (the seed's code, kept as written)
# Seed 004's TF2 code as written. On TensorFlow >= 2.16 `tf.optimizers` is Keras 3, whose
# optimizers have no `minimize`, so the first step raises AttributeError.
import numpy as np
import tensorflow as tf

w = tf.Variable(0.0, dtype=tf.float32)


def cost__():
    return w**2 + 10 * w + 25


optimizer = tf.optimizers.SGD(learning_rate=0.01)
try:
    for step in range(1000):
        optimizer.minimize(cost__, var_list=[w])
        if step == 999:
            print(w.numpy())
    raise AssertionError("expected an AttributeError")
except AttributeError as err:
    assert str(err) == "'SGD' object has no attribute 'minimize'", err
assert w.numpy() == 0.0  # not a single step was taken
