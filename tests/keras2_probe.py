"""The Keras 2 side of the porting gotchas about Keras 2 (tests/test_porting.py): run in a process
of its own with TF_USE_LEGACY_KERAS=1 (`tf.keras` is then tf_keras), as
`python tests/keras2_probe.py IN.npz OUT.npz`. It reads the inputs the test made, runs Keras 2
on them as Keras 2 code would, and writes what it measured; the test computes the Keras 3
side in its own process (Keras 2 and Keras 3 cannot share one) and asserts the differences.

Outputs (OUT.npz):
- bn_fused, bn_fused_mv, bn_unfused_mv: whether `BatchNormalization()` chose the fused kernel
  on the 4-D float32 batches `bn`, and the moving variance after a training call on each,
  with the default and with `fused=False`;
- bn64_python_mm/mv, bn64_numpy_mm/mv: the moving statistics of a float64 layer after the
  float64 batches `bn64`, momentum 0.99 given as a Python float and as np.float64;
- sgd_lr_new, sgd_lr_legacy, sgd_learning_rate_new, sgd_learning_rate_legacy: w after one
  SGD step of gradient 1 from w = 0, "lr 0.5" given as `lr=` and as `learning_rate=` to the
  v2.11+ and the legacy optimizer;
- decay_w: w at every step of the quadratic `quad` (a, b, c) under
  `tf.keras.optimizers.legacy.SGD(learning_rate=0.1, decay=0.01)`; decay_error: what the
  v2.11+ `SGD(..., decay=0.01)` raises;
- emb_table: the embedding table `emb_table` after one Adam step (lr 0.1) on
  sum(Embedding(ids) * emb_w), `ids` looking id 1 up twice;
- gru_v1, gru_v1_reset_after, gru_v2, gru_v2_reset_after: outputs on `gru_x` of
  `tf.compat.v1.keras.layers.GRU(3, return_sequences=True)` loaded with (kernel, recurrent
  kernel, the two bias rows summed) and of `tf.keras.layers.GRU(3, return_sequences=True)`
  loaded with the two rows, and each class's default reset_after.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run with TF_USE_LEGACY_KERAS=1"
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
    with np.load(src) as z:
        inp = {k: z[k] for k in z.files}
    out: dict[str, object] = {}

    # BatchNormalization: the fused kernel's moving variance; float64 momentum
    def bn(batches, **kwargs):
        layer = tf.keras.layers.BatchNormalization(epsilon=1e-3, **kwargs)
        for xb in batches:
            layer(xb, training=True)
        return layer

    layer = bn(inp["bn"], momentum=0.99)
    out["bn_fused"] = bool(layer.fused)
    out["bn_fused_mv"] = layer.moving_variance.numpy()
    out["bn_unfused_mv"] = bn(inp["bn"], momentum=0.99, fused=False).moving_variance.numpy()
    for label, momentum in (("python", 0.99), ("numpy", np.float64(0.99))):
        layer = bn(inp["bn64"], momentum=momentum, dtype="float64")
        out[f"bn64_{label}_mm"] = layer.moving_mean.numpy()
        out[f"bn64_{label}_mv"] = layer.moving_variance.numpy()

    # SGD: lr= against learning_rate=, the v2.11+ optimizers against the legacy ones
    for arg in ("lr", "learning_rate"):
        for label, ns in (("new", tf.keras.optimizers), ("legacy", tf.keras.optimizers.legacy)):
            w = tf.Variable([0.0])
            ns.SGD(**{arg: 0.5}).apply_gradients([(tf.constant([1.0]), w)])
            out[f"sgd_{arg}_{label}"] = w.numpy()

    # the legacy optimizers' time-based decay
    a, b, c = (float(v) for v in inp["quad"])
    w = tf.Variable(0.0)
    opt = tf.keras.optimizers.legacy.SGD(learning_rate=0.1, decay=0.01)
    trajectory = []
    for _ in range(100):
        with tf.GradientTape() as tape:
            loss = a * w * w + b * w + c
        opt.apply_gradients([(tape.gradient(loss, w), w)])
        trajectory.append(float(w.numpy()))
    out["decay_w"] = np.asarray(trajectory)
    try:
        tf.keras.optimizers.SGD(learning_rate=0.1, decay=0.01)
        out["decay_error"] = ""
    except ValueError as err:
        out["decay_error"] = f"{type(err).__name__}: {err}"

    # an embedding's sparse gradient: Keras 2's optimizers deduplicate the slices
    emb = tf.keras.layers.Embedding(*inp["emb_table"].shape)
    emb.build((None, inp["ids"].shape[1]))
    emb.set_weights([inp["emb_table"]])
    opt = tf.keras.optimizers.Adam(learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(inp["ids"]) * inp["emb_w"])
    grad = tape.gradient(loss, emb.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    opt.apply_gradients([(grad, emb.embeddings)])
    out["emb_table"] = emb.embeddings.numpy()

    # GRU: the default reset_after of the v1 and v2 classes
    x, k, rk, b2 = (inp[n] for n in ("gru_x", "gru_k", "gru_rk", "gru_b2"))
    for label, cls, bias in (("v1", tf.compat.v1.keras.layers.GRU, b2.sum(axis=0)),
                             ("v2", tf.keras.layers.GRU, b2)):
        layer = cls(3, return_sequences=True)
        layer.build(x.shape)
        layer.set_weights([k, rk, bias])
        out[f"gru_{label}"] = layer(x).numpy()
        out[f"gru_{label}_reset_after"] = bool(layer.reset_after)

    np.savez(dst, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main(*sys.argv[1:3])
