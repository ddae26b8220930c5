# Seed 004's TF2 code ported to Keras 3: `minimize(cost, var_list)` becomes a GradientTape and
# `apply_gradients`. It prints the seed's number, -4.9999886 (the minimum of
# (w + 5)^2 is -5; float32 stalls 1.1e-5 short of it).
import numpy as np
import tensorflow as tf

w = tf.Variable(0.0, dtype=tf.float32)


def cost__():
    return w**2 + 10 * w + 25


optimizer = tf.optimizers.SGD(learning_rate=0.01)
for step in range(1000):
    with tf.GradientTape() as tape:
        cost = cost__()
    optimizer.apply_gradients([(tape.gradient(cost, w), w)])
    if step == 999:
        print(w.numpy())

assert w.numpy() == np.float32(-4.9999886)
