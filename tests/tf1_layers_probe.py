"""The TF1 side of the porting gotchas about TF1 layer code as written (tests/test_porting.py):
`tf.compat.v1.layers` and `tf.compat.v1.nn.rnn_cell` run only with Keras 2, so this runs in a
process of its own with TF_USE_LEGACY_KERAS=1 (the registry's tf1-layers environment), as
`python tests/tf1_layers_probe.py IN.npz OUT.npz`. It reads the inputs the test made, runs
them through TF1's layer classes as a TF1 script would, and writes what it measured; the test
computes the Keras 3 and torch sides in its own process.

Outputs (OUT.npz):
- dense_kernel, dense_bias: a fresh `tf.compat.v1.layers.dense(x, units)`'s initial values
  (graph seed 0) for the input `dense_x`; dense_out: its output with `dense_w`, `dense_b`
  loaded;
- bn_momentum, bn_epsilon: `tf.compat.v1.layers.BatchNormalization()`'s defaults;
- bn_<case>_mm, bn_<case>_mv: moving mean and variance after one train step on each of the
  float32 batches `bn` (gamma, beta trained by SGD), for case "no_deps" (a train op that does
  not depend on UPDATE_OPS), "fused" (it does; `fused=None`, the default), "unfused" (it
  does; `fused=False`);
- lstm_out: every step's output of `rnn_cell.LSTMCell(u)` (forget_bias default) run by
  `dynamic_rnn` on `lstm_x` (float64), its variables `rnn/lstm_cell/kernel`, `.../bias` set to
  `lstm_kernel`, `lstm_bias`;
- gru_out: the same for `rnn_cell.GRUCell(u)` with `gru_gates_kernel`, `gru_gates_bias`,
  `gru_candidate_kernel`, `gru_candidate_bias`; gru_gates_bias_init: its fresh gates bias.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run with TF_USE_LEGACY_KERAS=1"
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
    tf1 = tf.compat.v1
    with np.load(src) as z:
        inp = {k: z[k] for k in z.files}
    out: dict[str, object] = {}

    def variables() -> dict:
        return {v.op.name: v for v in tf1.global_variables()}

    def assign(sess, values: dict) -> None:
        sess.run([variables()[n].assign(v) for n, v in values.items()])

    # dense: defaults, and the same weights loaded
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, (None, inp["dense_x"].shape[1]))
        y = tf1.layers.dense(x, inp["dense_w"].shape[1])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            kernel, bias = sess.run([variables()["dense/kernel"], variables()["dense/bias"]])
            out["dense_kernel"], out["dense_bias"] = kernel, bias
            assign(sess, {"dense/kernel": inp["dense_w"], "dense/bias": inp["dense_b"]})
            out["dense_out"] = sess.run(y, {x: inp["dense_x"]})
    layer = tf1.layers.BatchNormalization()
    out["bn_momentum"], out["bn_epsilon"] = layer.momentum, layer.epsilon

    # batch_normalization: UPDATE_OPS forgotten, the fused default, fused=False
    for case, deps, fused in (("no_deps", False, None), ("fused", True, None),
                              ("unfused", True, False)):
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float32, (None, *inp["bn"].shape[2:]))
            h = tf1.layers.batch_normalization(x, training=True, fused=fused)
            loss = tf.reduce_sum(tf.square(h - 1.0))
            opt = tf1.train.GradientDescentOptimizer(0.01)
            if deps:
                with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                    train = opt.minimize(loss)
            else:
                train = opt.minimize(loss)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                for xb in inp["bn"]:
                    sess.run(train, {x: xb})
                out[f"bn_{case}_mm"], out[f"bn_{case}_mv"] = sess.run(
                    [variables()["batch_normalization/moving_mean"],
                     variables()["batch_normalization/moving_variance"]])

    # LSTMCell and GRUCell with given variables, float64
    def run_cell(cell, xs, values):
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float64, (None, *xs.shape[1:]))
            outputs, _ = tf1.nn.dynamic_rnn(cell(), x, dtype=tf.float64)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                fresh = sess.run(variables())
                assign(sess, values)
                return sess.run(outputs, {x: xs}), fresh

    u = inp["lstm_bias"].shape[0] // 4
    out["lstm_out"], _ = run_cell(lambda: tf1.nn.rnn_cell.LSTMCell(u), inp["lstm_x"],
                                  {"rnn/lstm_cell/kernel": inp["lstm_kernel"],
                                   "rnn/lstm_cell/bias": inp["lstm_bias"]})
    u = inp["gru_candidate_bias"].shape[0]
    out["gru_out"], fresh = run_cell(
        lambda: tf1.nn.rnn_cell.GRUCell(u), inp["gru_x"],
        {f"rnn/gru_cell/{part}/{kind}": inp[f"gru_{part}_{kind}"]
         for part in ("gates", "candidate") for kind in ("kernel", "bias")})
    out["gru_gates_bias_init"] = fresh["rnn/gru_cell/gates/bias"]
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
