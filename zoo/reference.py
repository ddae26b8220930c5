"""Float64 numpy reference of every zoo model: activations, losses, every canonical layer's
forward pass and hand-derived backward pass, the optimizers, and the training loop.

This is the oracle every framework is tested against: the same formulas in plain numpy,
computed in float64, with no framework and no autodiff involved. It runs any `spec.resolved`
layer list (`zoo.layers`): Dense, Conv2D (NHWC images, HWIO kernels, strides, 'valid' and
TF's 'same' padding, asymmetric when the total is odd), MaxPool2D and AvgPool2D ('valid'),
Flatten (a plain reshape of NHWC: H, W, C order), Dropout (the shared masks, as
``h * (mask / (1 - rate))``; the identity without masks), the activations relu, sigmoid,
tanh and linear, BatchNorm and LayerNorm, and for sequences Embedding (a row lookup of the
integer ids), LSTM and GRU (Keras's equations, `zoo.layers`; backpropagation through time).

Training and inference modes differ for BatchNorm only (`zoo.layers.BatchNorm`): a training
pass (`loss_and_grads`, `step_details`, `train`) normalises with the batch's mean and biased
variance, backpropagates through them, and yields the moving statistics the batch leaves
behind; an inference pass (`forward`, `predict`, `evaluate`) normalises with the moving
statistics. Gradients cover the trained tensors only; the state tensors (moving statistics)
travel with the weights and are never trained. Losses take the raw outputs (logits, never probabilities) and reduce by the
mean over the batch, as every framework in the zoo does.

Convolutions are im2col + one BLAS matmul per batch, vectorised over the batch; the patches
are gathered (and the input gradient scattered back) by a loop over the kh * kw kernel
offsets, never over samples or pixels. Images travel channel-major inside the network (see
the layers section); everything in and out is NHWC. Recurrent layers loop over time steps
only, vectorised over the batch (see the sequences section).

It also implements the framework contract (`build`, `get_weights`, `set_weights`, `train`,
`predict`, `evaluate`, `step_details`), so a harness can treat it as one more framework.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from zoo.errors import ConfigError
from zoo.layers import Resolved
from zoo.specs import (
    History,
    ModelSpec,
    StepWeights,
    TrainSpec,
    check_canonical,
    check_inputs,
    dropout_masks,
    init_weights,
    record_every,
    records,
)

__all__ = [
    "NumpyOptimizer",
    "ReferenceModel",
    "binary_cross_entropy_with_logits",
    "build",
    "cross_entropy",
    "cross_entropy_with_logits",
    "evaluate",
    "forward",
    "get_weights",
    "hinge_loss",
    "log_softmax",
    "loss_and_grads",
    "mse",
    "predict",
    "quadratic_loss",
    "rounding_scale",
    "set_weights",
    "sigmoid",
    "softmax",
    "step_details",
    "train",
]

FRAMEWORK = "numpy"
#: Largest im2col patch matrix, or recurrent layer's record of its steps, (in float64 numbers)
#: one forward pass of `forward` builds: larger inputs are run in chunks of samples (a
#: 2,000-image LeNet test set would otherwise allocate 300 MB of patches at once, an LSTM(64)
#: over 10,000 28x28 images 1.6 GB of gates and states).
_PATCH_BUDGET = 4_000_000


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Max-subtracted softmax (stable for large logits)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) for z >= 0 and exp(z) / (1 + exp(z)) below: neither overflows, and
    small values keep their relative precision."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    d = 1.0 + e
    return np.where(z >= 0, 1.0 / d, e / d)


def cross_entropy(y_true: np.ndarray, y_prob: np.ndarray, base: float | None = None) -> float:
    """-sum(y * log p) for one one-hot (or soft) target and a probability vector; natural log
    unless `base` is given (seed 003 printed its softmax loss in log base 10)."""
    ce = -float(np.sum(np.asarray(y_true, np.float64) * np.log(np.asarray(y_prob, np.float64))))
    return ce / np.log(base) if base else ce


def cross_entropy_with_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer labels given logits (N, C)."""
    lp = log_softmax(logits)
    labels = np.asarray(labels, dtype=np.int64)
    return float(-lp[np.arange(len(labels)), labels].mean())


def hinge_loss(scores: np.ndarray, labels: np.ndarray, margin: float = 1.0) -> float:
    """Mean multiclass hinge (SVM) loss of CS231n (seed 003): sum over j != y of
    max(0, s_j - s_y + margin), averaged over the batch."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.atleast_1d(np.asarray(labels, dtype=np.int64))
    idx = np.arange(len(labels))
    m = np.maximum(0.0, s - s[idx, labels][:, None] + margin)
    m[idx, labels] = 0.0
    return float(m.sum(axis=1).mean())


def binary_cross_entropy_with_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of 0/1 targets given logits, computed stably."""
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(targets, np.float64).reshape(-1)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error; both arrays must have the same shape (no (N,) vs (N, 1) broadcast)."""
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"mse: shapes {pred.shape} and {target.shape} differ; reshape the "
                         "target to (N, 1) so that nothing broadcasts to N x N.")
    return float(np.mean((pred - target) ** 2))


def quadratic_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Seed 001's quadratic cost: the mean over samples of 0.5 * sum_j (sigmoid(z_j) - y_j)^2,
    y the one-hot of the integer labels (half the squared error summed over the outputs, not
    averaged over them as Keras's `mse` would)."""
    a = sigmoid(logits)
    return float(np.mean(0.5 * np.sum((a - _one_hot(labels, a.shape[1])) ** 2, axis=1)))


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels, np.int64).ravel()
    out = np.zeros((len(labels), n_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


# ----------------------------------------------------------------------------- layers
# Each layer kind has a forward (input -> output, plus what its backward needs) and a
# backward (output gradient -> input gradient and weight gradients). Inside the network,
# images travel channel-major, (C, N, H, W): each kernel or pool offset then reads whole image
# rows, the conv's matmul writes its output in that layout directly, and the HWIO kernel
# reshapes to the patch matrix as it is. The public interface stays NHWC: the layout changes
# at the input, at a Flatten (which flattens in H, W, C order) and for image-shaped masks.

def _offsets(start: int, count: int, stride: int) -> slice:
    """The input rows (or columns) that kernel offset `start` meets at `count` output
    positions `stride` apart."""
    return slice(start, start + stride * (count - 1) + 1, stride)


def _conv_geometry(r: Resolved):
    """((H, W, C) in, (Ho, Wo) out, kernel, strides, (top, bottom), (left, right) padding)."""
    layer = r.layer
    return (tuple(r.input_shape), tuple(r.output_shape[:2]), layer.kernel_size, layer.strides,
            *layer.padding_of(r.input_shape))


def _conv_patches(x: np.ndarray, r: Resolved) -> np.ndarray:
    """im2col of the (C, N, H, W) batch `x` for conv layer `r`: the (kh * kw * C, N * Ho * Wo)
    patch matrix, rows in the HWIO kernel's (kh, kw, C) order, zero padding included."""
    (h, w, c), (ho, wo), (kh, kw), (sh, sw), (pt, pb), (pl, pr) = _conv_geometry(r)
    n = x.shape[1]
    if pt or pb or pl or pr:
        xp = np.zeros((c, n, h + pt + pb, w + pl + pr))
        xp[:, :, pt:pt + h, pl:pl + w] = x
    else:
        xp = x
    cols = np.empty((kh, kw, c, n, ho, wo))
    for i in range(kh):
        for j in range(kw):
            cols[i, j] = xp[:, :, _offsets(i, ho, sh), _offsets(j, wo, sw)]
    return cols.reshape(kh * kw * c, n * ho * wo)


def _conv_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, r: Resolved
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of (C, N, H, W) `x` with the HWIO `kernel`, plus `bias`:
    ((F, N, Ho, Wo) output, patch matrix)."""
    cols = _conv_patches(x, r)
    f = kernel.shape[3]
    z = (kernel.reshape(-1, f).T @ cols).reshape(f, x.shape[1], *r.output_shape[:2])
    if bias is not None:   # a Conv2D(use_bias=False) has none
        z += bias[:, None, None, None]
    return z, cols


def _conv_backward(d: np.ndarray, cols: np.ndarray, kernel: np.ndarray, r: Resolved,
                   need_input: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(input gradient or None, kernel gradient, bias gradient) of a conv layer from the
    (F, N, Ho, Wo) output gradient `d`. The input gradient is col2im of the patch gradient:
    each kernel offset adds its slice back into the padded input (a loop over the kh * kw
    offsets, never over samples), and the padding is cut off."""
    f = kernel.shape[3]
    d2 = d.reshape(f, -1)
    dk = (cols @ d2.T).reshape(kernel.shape)
    db = d2.sum(axis=1)
    if not need_input:
        return None, dk, db
    (h, w, c), (ho, wo), (kh, kw), (sh, sw), (pt, pb), (pl, pr) = _conv_geometry(r)
    n = d.shape[1]
    dcols = (kernel.reshape(-1, f) @ d2).reshape(kh, kw, c, n, ho, wo)
    dxp = np.zeros((c, n, h + pt + pb, w + pl + pr))
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, _offsets(i, ho, sh), _offsets(j, wo, sw)] += dcols[i, j]
    return dxp[:, :, pt:pt + h, pl:pl + w], dk, db


def _pool_windows(x: np.ndarray, r: Resolved) -> np.ndarray:
    """Every pooling window of (C, N, H, W) `x`: (ph * pw, C, N, Ho, Wo), offsets in window
    order (row by row)."""
    (ph, pw), (sh, sw) = r.layer.pool_size, r.layer.strides
    ho, wo, c = r.output_shape
    win = np.empty((ph * pw, c, x.shape[1], ho, wo))
    for i in range(ph):
        for j in range(pw):
            win[i * pw + j] = x[:, :, _offsets(i, ho, sh), _offsets(j, wo, sw)]
    return win


def _pool_backward(per_offset: Callable[[int], np.ndarray], n: int, r: Resolved) -> np.ndarray:
    """Input gradient of a pool: the gradient reaching each window offset (`per_offset(k)`,
    shaped like the output) added back where that offset reads (windows may overlap)."""
    (ph, pw), (sh, sw) = r.layer.pool_size, r.layer.strides
    (h, w, c), (ho, wo, _) = r.input_shape, r.output_shape
    dx = np.zeros((c, n, h, w))
    for i in range(ph):
        for j in range(pw):
            dx[:, :, _offsets(i, ho, sh), _offsets(j, wo, sw)] += per_offset(i * pw + j)
    return dx


def _max_pool_forward(x: np.ndarray, r: Resolved) -> tuple[np.ndarray, np.ndarray]:
    """(max of every window, one-hot of the offset that takes the gradient). On ties the
    FIRST max in window order (row by row) takes the whole gradient, as numpy's argmax and
    torch's CPU max pool pick it. (A NaN max routes no gradient: its loss stops training.)"""
    win = _pool_windows(x, r)
    out = win.max(axis=0)
    first = win == out
    taken = first[0].copy()
    for k in range(1, len(win)):   # cheaper than argmax along the short leading axis
        first[k] &= ~taken
        taken |= first[k]
    return out, first


# ----------------------------------------------------------------------------- sequences
# Sequences travel batch-major, (N, T, F), between layers, as they come in and go out. Inside
# a recurrent layer they are time-major, (T, N, F): the input's share of every gate, x @ W + b,
# is one matmul over all T * N rows before the loop, each step then reads one contiguous
# (N, G*u) block and adds h @ U, and the backward pass sums the kernel gradients of all steps
# in one matmul after its loop. Only the recurrence itself loops, over time, never over
# samples. What the backward pass multiplies by at every step (the gate derivatives) is
# computed for all steps at once between the two loops.

#: a recurrent layer's tensors, in the order its backward pass returns their gradients
_RECURRENT_TENSORS = ("kernel", "recurrent_kernel", "bias")


def _one_blas_thread() -> Callable[[], contextlib.AbstractContextManager]:
    """A context that runs BLAS on one thread (threadpoolctl, which scikit-learn installs;
    without it, nothing changes). The steps' matmuls are small, (batch, u) @ (u, G*u), and
    a BLAS that splits each over threads waits on them every step: measured on two cores
    with another process busy, an LSTM(64) epoch of 2,000 28x28 images took 1.5-4.1 s with
    OpenBLAS's two threads, 0.49 s with one (torch float64: 0.38 s). Entering costs ~6 us."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:   # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1, user_api="blas")


_blas_steps: Callable[[], contextlib.AbstractContextManager] | None = None


def _steps_context() -> contextlib.AbstractContextManager:
    """`_one_blas_thread`'s context, its controller made once, on first use."""
    global _blas_steps
    if _blas_steps is None:
        _blas_steps = _one_blas_thread()
    return _blas_steps()


def _time_major(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(the (T * N, F) time-major rows of the (N, T, F) batch `x`, x @ kernel + bias for
    every step as (T, N, G*u))."""
    n, steps, f = x.shape
    rows = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * n, f)
    return rows, (rows @ kernel + bias).reshape(steps, n, -1)


def _sequence_output(hs: np.ndarray, return_sequences: bool) -> np.ndarray:
    """The layer's output from the time-major states hs (T + 1, N, u), hs[0] the zero start:
    (N, T, u) or the last step's (N, u)."""
    return hs[1:].transpose(1, 0, 2) if return_sequences else hs[-1]


def _sequence_grads(d: np.ndarray, steps: int, return_sequences: bool):
    """(the gradient reaching the last step's state, the time-major (T, N, u) gradient of
    every step's output or None) from the layer's output gradient `d`."""
    if return_sequences:
        seq = d.transpose(1, 0, 2)
        return seq[-1].copy(), seq
    return np.array(d, np.float64), None


def _inputs_backward(rows: np.ndarray, da: np.ndarray, kernel: np.ndarray, n: int,
                     need_input: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(the (N, T, F) input gradient or None, the kernel gradient) from the time-major
    pre-activation gradients `da` (T, N, G*u) of the input's share x @ kernel."""
    da2 = da.reshape(len(rows), -1)
    gk = rows.T @ da2
    if not need_input:
        return None, gk
    return (da2 @ kernel.T).reshape(-1, n, kernel.shape[0]).transpose(1, 0, 2), gk


def _lstm_forward(x: np.ndarray, kernel: np.ndarray, rec: np.ndarray, bias: np.ndarray,
                  return_sequences: bool) -> tuple[np.ndarray, tuple]:
    """`zoo.layers.LSTM` over the (N, T, F) batch `x`, h and c starting at zero: (output,
    cache). Gates i, f, c, o side by side in the last axis; the cache keeps every step's
    activated gates, cell states and tanh of the cell."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    rows, xw = _time_major(x, kernel, bias)
    hs = np.zeros((steps + 1, n, u))
    cs = np.zeros((steps + 1, n, u))
    gates = np.empty((steps, n, 4 * u))
    tcs = np.empty((steps, n, u))
    for t in range(steps):
        z = xw[t] + hs[t] @ rec
        g = gates[t]
        g[:] = sigmoid(z)                           # i, f and o (c is overwritten next)
        np.tanh(z[:, 2 * u:3 * u], out=g[:, 2 * u:3 * u])
        np.add(g[:, u:2 * u] * cs[t], g[:, :u] * g[:, 2 * u:3 * u], out=cs[t + 1])
        np.tanh(cs[t + 1], out=tcs[t])
        np.multiply(g[:, 3 * u:], tcs[t], out=hs[t + 1])
    return _sequence_output(hs, return_sequences), (rows, hs, cs, gates, tcs, return_sequences)


def _lstm_backward(d: np.ndarray, cache: tuple, kernel: np.ndarray, rec: np.ndarray,
                   need_input: bool):
    """Backpropagation through time of `_lstm_forward`: (input gradient or None, kernel,
    recurrent kernel and bias gradients) from the output gradient `d`.

    With a = the pre-activations and s' the activation derivatives, per step (backwards):
        dc += dh * o * (1 - tanh(c)^2)
        da_i = dc * c~ * s'_i, da_f = dc * c_prev * s'_f, da_c = dc * i * s'_c,
        da_o = dh * tanh(c) * s'_o,
        dc_prev = dc * f,  dh_prev = da @ U^T (+ the previous step's output gradient)."""
    rows, hs, cs, gates, tcs, seq = cache
    steps, n, u = tcs.shape
    # Everything the loop multiplies by, for all steps at once: the first three gate
    # blocks are multiplied by dc, the last by dh.
    act = gates.copy()
    act[..., 2 * u:3 * u] = 1.0 - act[..., 2 * u:3 * u] ** 2      # tanh'
    for blk in (slice(0, 2 * u), slice(3 * u, 4 * u)):
        act[..., blk] *= 1.0 - gates[..., blk]                      # sigmoid'
    by = np.empty((steps, n, 4, u))
    by[:, :, 0] = gates[..., 2 * u:3 * u]          # da_i = dc * c~ * s'_i
    by[:, :, 1] = cs[:-1]                          # da_f = dc * c_prev * s'_f
    by[:, :, 2] = gates[..., :u]                   # da_c = dc * i * s'_c
    by[:, :, 3] = tcs                              # da_o = dh * tanh(c) * s'_o
    by *= act.reshape(steps, n, 4, u)
    dc_from_h = gates[..., 3 * u:] * (1.0 - tcs * tcs)
    forget = gates[..., u:2 * u]
    rec_t = np.ascontiguousarray(rec.T)
    dh, dseq = _sequence_grads(d, steps, seq)
    dc = np.zeros((n, u))
    da = np.empty((steps, n, 4, u))
    for t in range(steps - 1, -1, -1):
        if dseq is not None and t < steps - 1:
            dh += dseq[t]
        dc += dh * dc_from_h[t]
        np.multiply(by[t, :, :3], dc[:, None, :], out=da[t, :, :3])
        np.multiply(by[t, :, 3], dh, out=da[t, :, 3])
        dc *= forget[t]
        dh = da[t].reshape(n, 4 * u) @ rec_t
    da = da.reshape(steps, n, 4 * u)
    dx, gk = _inputs_backward(rows, da, kernel, n, need_input)
    gr = hs[:-1].reshape(-1, u).T @ da.reshape(-1, 4 * u)
    return dx, gk, gr, da.reshape(-1, 4 * u).sum(axis=0)


def _gru_forward(x: np.ndarray, kernel: np.ndarray, rec: np.ndarray, bias: np.ndarray,
                 return_sequences: bool, reset_after: bool) -> tuple[np.ndarray, tuple]:
    """`zoo.layers.GRU` over the (N, T, F) batch `x`, h starting at zero: (output, cache).
    Gates z, r, h side by side in the last axis. reset_after: bias rows (input, recurrent)
    and h~ = tanh(x Wh + bh + r * (h Uh + b'h)); otherwise one bias row and
    h~ = tanh(x Wh + (r * h) Uh + bh). The cache keeps every step's z and r, h~, and the
    recurrent term the reset gate multiplies (h Uh + b'h, or r * h)."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    rows, xw = _time_major(x, kernel, bias[0] if reset_after else bias)
    hs = np.zeros((steps + 1, n, u))
    zr = np.empty((steps, n, 2 * u))
    cand = np.empty((steps, n, u))
    reset_of = np.empty((steps, n, u))   # what r multiplies
    if reset_after:
        rec_bias = bias[1]
    else:
        rec_zr, rec_h = np.ascontiguousarray(rec[:, :2 * u]), np.ascontiguousarray(rec[:, 2 * u:])
    for t in range(steps):
        h = hs[t]
        if reset_after:
            hu = h @ rec + rec_bias
            zr[t] = sigmoid(xw[t, :, :2 * u] + hu[:, :2 * u])
            reset_of[t] = hu[:, 2 * u:]
            np.tanh(xw[t, :, 2 * u:] + zr[t, :, u:] * reset_of[t], out=cand[t])
        else:
            zr[t] = sigmoid(xw[t, :, :2 * u] + h @ rec_zr)
            np.multiply(zr[t, :, u:], h, out=reset_of[t])
            np.tanh(xw[t, :, 2 * u:] + reset_of[t] @ rec_h, out=cand[t])
        z = zr[t, :, :u]
        np.add(z * h, (1.0 - z) * cand[t], out=hs[t + 1])
    return (_sequence_output(hs, return_sequences),
            (rows, hs, zr, cand, reset_of, return_sequences, reset_after))


def _gru_backward(d: np.ndarray, cache: tuple, kernel: np.ndarray, rec: np.ndarray,
                  need_input: bool):
    """Backpropagation through time of `_gru_forward`: (input gradient or None, kernel,
    recurrent kernel and bias gradients) from the output gradient `d`.

    Per step (backwards), with a the pre-activations and s' the activation derivatives:
        da_z = dh * (h_prev - h~) * s'_z,  da_h = dh * (1 - z) * s'_h,
        reset_after:  da_r = da_h * (h_prev Uh + b'h) * s'_r,
                      dh_prev = dh * z + [da_z, da_r, da_h * r] @ U^T
                      (the input's share takes [da_z, da_r, da_h], the recurrent bias row
                      and U take [da_z, da_r, da_h * r]);
        otherwise:    d(r h) = da_h @ Uh^T,  da_r = d(r h) * h_prev * s'_r,
                      dh_prev = dh * z + d(r h) * r + [da_z, da_r] @ Uzr^T
                      (Uh's gradient is (r h)^T da_h)."""
    rows, hs, zr, cand, reset_of, seq, reset_after = cache
    steps, n, u = cand.shape
    z, r = zr[..., :u], zr[..., u:]
    s_zr = zr * (1.0 - zr)
    by_z = (hs[:-1] - cand) * s_zr[..., :u]                    # da_z = dh * by_z
    by_h = (1.0 - z) * (1.0 - cand * cand)                     # da_h = dh * by_h
    by_r = (reset_of if reset_after else hs[:-1]) * s_zr[..., u:]
    dh, dseq = _sequence_grads(d, steps, seq)
    da = np.empty((steps, n, 3 * u))
    if reset_after:
        rec_t = np.ascontiguousarray(rec.T)
        drec = np.empty((steps, n, 3 * u))      # what U and the recurrent bias row take
    else:
        rec_zr_t = np.ascontiguousarray(rec[:, :2 * u].T)
        rec_h_t = np.ascontiguousarray(rec[:, 2 * u:].T)
    for t in range(steps - 1, -1, -1):
        if dseq is not None and t < steps - 1:
            dh += dseq[t]
        a = da[t]
        np.multiply(dh, by_z[t], out=a[:, :u])
        np.multiply(dh, by_h[t], out=a[:, 2 * u:])
        if reset_after:
            np.multiply(a[:, 2 * u:], by_r[t], out=a[:, u:2 * u])
            b = drec[t]
            b[:, :2 * u] = a[:, :2 * u]
            np.multiply(a[:, 2 * u:], r[t], out=b[:, 2 * u:])
            dh = dh * z[t] + b @ rec_t
        else:
            drh = a[:, 2 * u:] @ rec_h_t
            np.multiply(drh, by_r[t], out=a[:, u:2 * u])
            dh = dh * z[t] + drh * r[t] + a[:, :2 * u] @ rec_zr_t
    dx, gk = _inputs_backward(rows, da, kernel, n, need_input)
    da2 = da.reshape(-1, 3 * u)
    h_prev = hs[:-1].reshape(-1, u)
    if reset_after:
        drec2 = drec.reshape(-1, 3 * u)
        return dx, gk, h_prev.T @ drec2, np.stack([da2.sum(axis=0), drec2.sum(axis=0)])
    gr = np.concatenate([h_prev.T @ da2[:, :2 * u], reset_of.reshape(-1, u).T @ da2[:, 2 * u:]],
                        axis=1)
    return dx, gk, gr, da2.sum(axis=0)


#: layers whose magnitude bound (`rounding_scale`) needs values of the real forward pass
_NEEDS_REAL_PASS = ("batch_norm", "layer_norm", "lstm", "gru")


def _recurrent_bound(m: np.ndarray, params: dict[str, np.ndarray], r: Resolved, cache: tuple
                     ) -> np.ndarray:
    """The magnitude pass of a recurrent layer (`rounding_scale`): `m` the magnitudes of its
    (N, T, F) input, `params` the |weights|, `cache` its real forward pass; returns |h| plus
    the rounding h may carry (in units of eps), per output.

    Its outputs are within 1, but the rounding they carry is not: the sums inside the gates
    can be far larger than the gates, and every step's rounding enters the next step's. Each
    step adds its own rounding as everywhere else in the pass (sums: sum |w| M + |b|; an
    activation s(a): |s(a)| + |s'(a)| times its input's, with s' from the real pass; a
    product p q: |p| q's + |q| p's + |p q|), c carries its rounding through f (elementwise,
    so exactly). What h carries into the next step is mixed by U, and there magnitudes with
    no cancellation would be wrong: the column sums of |U| (3.2 for the initial orthogonal
    U of LSTM(64)) times the gate slopes exceed 1, so they grow geometrically over the steps
    (measured: 1e9 to 1e12 times the float32 error after 28 steps), while roundings of
    either sign mostly cancel. So that term is propagated as independent errors,
    sqrt(e^2 @ U^2). Measured, torch float32 against this float64 reference, LSTM(64) and
    GRU(64) on digits (8 steps) and 28x28 digits (28 steps), initial and trained weights:
    the distance stays within 0.14 of the scale. Taking h as exact (a bound of 1, as for a
    tanh layer) is not enough: trained, the distance reached 2 times that scale."""
    k, rk, b = (params[f"{r.name}/{t}"] for t in _RECURRENT_TENSORS)
    u = rk.shape[0]
    rk2 = rk * rk
    n, steps = m.shape[:2]
    if r.kind == "lstm":
        _rows, hs, cs, gates, tcs, seq = cache
        xa = _time_major(m, k, b)[1]
        out = np.zeros((steps + 1, n, u))       # |h| + its rounding; h0 = 0 is exact
        slope = gates * (1.0 - gates)
        slope[..., 2 * u:3 * u] = 1.0 - gates[..., 2 * u:3 * u] ** 2
        eh = np.zeros((n, u))
        ec = np.zeros((n, u))
        for t in range(steps):
            h = np.abs(hs[t])
            g = np.abs(gates[t])
            eg = g + slope[t] * (xa[t] + h @ rk + np.sqrt(eh * eh @ rk2))
            i, f, cc, o = (g[:, j * u:(j + 1) * u] for j in range(4))
            ei, ef, ecc, eo = (eg[:, j * u:(j + 1) * u] for j in range(4))
            ec = f * ec + np.abs(cs[t]) * ef + i * ecc + cc * ei + np.abs(cs[t + 1])
            tc = np.abs(tcs[t])
            eh = o * (tc + (1.0 - tc * tc) * ec) + tc * eo + np.abs(hs[t + 1])
            out[t + 1] = np.abs(hs[t + 1]) + eh
        return _sequence_output(out, seq)
    _rows, hs, zr, cand, reset_of, seq, reset_after = cache
    xa = _time_major(m, k, b[0] if reset_after else b)[1]
    out = np.zeros((steps + 1, n, u))
    slope = zr * (1.0 - zr)
    cslope = 1.0 - cand * cand
    eh = np.zeros((n, u))
    for t in range(steps):
        h = np.abs(hs[t])
        z, rr, hc = zr[t, :, :u], zr[t, :, u:], np.abs(cand[t])
        if reset_after:
            ha = h @ rk + b[1] + np.sqrt(eh * eh @ rk2)
            ezr = zr[t] + slope[t] * (xa[t, :, :2 * u] + ha[:, :2 * u])
            ereset = rr * ha[:, 2 * u:] + np.abs(reset_of[t]) * ezr[:, u:] \
                + np.abs(rr * reset_of[t])
            ecand = hc + cslope[t] * (xa[t, :, 2 * u:] + ereset)
        else:
            ezr = zr[t] + slope[t] * (xa[t, :, :2 * u] + h @ rk[:, :2 * u]
                                      + np.sqrt(eh * eh @ rk2[:, :2 * u]))
            rh = np.abs(reset_of[t])
            erh = rr * eh + h * ezr[:, u:] + rh
            ecand = hc + cslope[t] * (xa[t, :, 2 * u:] + rh @ rk[:, 2 * u:]
                                      + np.sqrt(erh * erh @ rk2[:, 2 * u:]))
        ez = ezr[:, :u]
        eh = z * eh + h * ez + (1.0 - z) * ecand + hc * ez + np.abs(hs[t + 1])
        out[t + 1] = np.abs(hs[t + 1]) + eh
    return _sequence_output(out, seq)


def _to_channels_first(a: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> the network's (C, N, H, W); flat arrays pass unchanged."""
    return a.transpose(3, 0, 1, 2) if a.ndim == 4 else a


def _to_channels_last(a: np.ndarray) -> np.ndarray:
    return a.transpose(1, 2, 3, 0) if a.ndim == 4 else a


# ----------------------------------------------------------------------------- the model
def _params(spec: ModelSpec, weights: dict[str, Any], X: np.ndarray) -> dict[str, np.ndarray]:
    """The model's tensors in float64, after checking their names and shapes against its
    tables and the shape of the samples `X` against its input."""
    check_canonical(weights, spec)
    check_inputs(spec, X, what="zoo.reference")
    return {name: np.asarray(weights[name], np.float64) for name in spec.weight_shapes()}


def _scales(spec: ModelSpec, masks: list[np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    """Dropout layer name -> mask / (1 - rate) in the network's layout, one mask per Dropout
    layer of nonzero rate, in order (`zoo.specs.dropout_masks`); no masks: every Dropout is
    the identity."""
    if masks is None:
        return {}
    drops = [r for r in spec.resolved if r.kind == "dropout" and r.layer.rate > 0]
    if len(masks) != len(drops):
        raise ConfigError(f"{len(masks)} dropout masks for the {len(drops)} Dropout layer(s) "
                          f"{[r.name for r in drops]} of model {spec.name!r}; pass one mask per "
                          "Dropout layer (zoo.specs.dropout_masks) or None.")
    out = {}
    for r, m in zip(drops, masks, strict=True):
        m = np.asarray(m, np.float64)
        if m.shape != (n, *r.input_shape):
            raise ConfigError(f"{r.name}: its dropout mask has shape {m.shape}, expected "
                              f"{(n, *r.input_shape)} (the batch, then the layer's input).")
        out[r.name] = _to_channels_first(m / (1.0 - r.layer.rate))
    return out


def _norm_axes(h: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the axes a BatchNorm reduces, the shape its per-channel vectors broadcast as) for the
    network's layouts: (C, N, H, W) images or (N, F) features."""
    return ((1, 2, 3), (-1, 1, 1, 1)) if h.ndim == 4 else ((0,), (1, -1))


def _normalise(h: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
               gamma: np.ndarray, beta: np.ndarray, shape: tuple[int, ...]):
    """(gamma * (h - mean) / sqrt(var + eps) + beta, the normalised h, 1 / sqrt(var + eps))."""
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (h - mean.reshape(shape)) * inv.reshape(shape)
    return xhat * gamma.reshape(shape) + beta.reshape(shape), xhat, inv


def _run(spec: ModelSpec, params: dict[str, np.ndarray], X: np.ndarray,
         scales: dict[str, np.ndarray], bound: bool = False, training: bool = False,
         real: dict[str, Any] | None = None) -> tuple[np.ndarray, list]:
    """The forward pass: (raw outputs, one cache per layer for the backward pass).

    training: BatchNorm normalises with the batch statistics (and its cache carries them for
    `_moving_statistics`); otherwise with the moving ones.
    bound: the magnitude pass of `rounding_scale` (params are then |weights|, X is |X|):
    sigmoid and tanh outputs are bounded by 1, so they give 1; a normalisation multiplies
    |h| + |mean| by |gamma| / sqrt(var + eps) with the mean and variance of the real pass;
    a recurrent layer propagates the magnitudes through its steps with the real pass's gates
    (`_recurrent_bound`). `real`: layer name -> that layer's cache of the real pass, for the
    normalisation and recurrent layers."""
    h = _to_channels_first(np.asarray(X, np.float64))
    tape: list[Any] = []
    for r in spec.resolved:
        kind, cache = r.kind, None
        if kind == "dense":
            cache = h
            h = h @ params[f"{r.name}/kernel"] + params[f"{r.name}/bias"]
        elif kind == "conv2d":
            h, cache = _conv_forward(h, params[f"{r.name}/kernel"],
                                     params.get(f"{r.name}/bias"), r)
        elif kind in ("batch_norm", "layer_norm"):
            gamma, beta, eps = (params[f"{r.name}/gamma"], params[f"{r.name}/beta"],
                                float(r.layer.epsilon))
            if kind == "layer_norm":   # per sample over the features: (N, 1) statistics
                axes, shape = (1,), (-1, 1)
                gamma, beta = gamma[None, :], beta[None, :]
            else:
                axes, shape = _norm_axes(h)
            if bound:
                cached = (real or {})[r.name]
                mean, inv = cached[3], cached[1]
                h = ((h + np.abs(mean).reshape(shape)) * inv.reshape(shape)
                     * gamma.reshape(shape if kind == "batch_norm" else (1, -1))
                     + beta.reshape(shape if kind == "batch_norm" else (1, -1)))
            else:
                if kind == "layer_norm" or training:
                    mean = h.mean(axis=axes)
                    var = np.square(h - mean.reshape(shape)).mean(axis=axes)
                else:
                    mean = params[f"{r.name}/moving_mean"]
                    var = params[f"{r.name}/moving_variance"]
                if kind == "layer_norm":
                    inv = 1.0 / np.sqrt(var + eps)
                    xhat = (h - mean[:, None]) * inv[:, None]
                    h = xhat * gamma + beta
                else:
                    h, xhat, inv = _normalise(h, mean, var, eps, gamma, beta, shape)
                batch = kind == "layer_norm" or training
                count = h.size // h.shape[0 if h.ndim == 4 else 1] if kind == "batch_norm" \
                    else h.shape[1]
                cache = (xhat, inv, batch, mean, var, count)
        elif kind == "max_pool2d":
            h, cache = _max_pool_forward(h, r)
        elif kind == "avg_pool2d":
            h = _pool_windows(h, r).mean(axis=0)
        elif kind == "flatten":
            h = _to_channels_last(h).reshape(len(X), -1)
        elif kind == "dropout":
            cache = scales.get(r.name)
            if cache is not None:
                h = h * cache
        elif kind == "embedding":
            # ids are whole-number floats (`zoo.specs.check_inputs`); |X| keeps them
            cache = h.astype(np.int64)
            h = params[f"{r.name}/embeddings"][cache]
        elif kind in ("lstm", "gru"):
            with _steps_context():
                if bound:
                    h = _recurrent_bound(h, params, r, (real or {})[r.name])
                else:
                    k, rk, b = (params[f"{r.name}/{t}"] for t in _RECURRENT_TENSORS)
                    seq = r.layer.return_sequences
                    h, cache = (_lstm_forward(h, k, rk, b, seq) if kind == "lstm"
                                else _gru_forward(h, k, rk, b, seq, r.layer.reset_after))
        elif kind == "activation":
            name = r.layer.name
            if name == "relu":
                cache = h
                h = np.maximum(h, 0.0)
            elif name in ("sigmoid", "tanh"):
                h = np.ones_like(h) if bound else sigmoid(h) if name == "sigmoid" else np.tanh(h)
                cache = h
        else:  # pragma: no cover - zoo.layers knows no other kind
            raise ConfigError(f"{r.name}: the numpy reference has no {kind!r} layer.")
        tape.append(cache)
    return _to_channels_last(h), tape


def _backward(spec: ModelSpec, params: dict[str, np.ndarray], tape: list, dz: np.ndarray,
              l2: float) -> dict[str, np.ndarray]:
    """Every weight's gradient from the output gradient `dz`, in model order. The walk stops
    at the first layer with weights: nothing before it needs a gradient."""
    resolved = spec.resolved
    weighted = [i for i, r in enumerate(resolved) if r.tensors]
    if not weighted:
        return {}
    grads: dict[str, np.ndarray] = {}
    n = len(dz)
    d = _to_channels_first(dz)
    for i in range(len(resolved) - 1, weighted[0] - 1, -1):
        r, cache, kind = resolved[i], tape[i], resolved[i].kind
        need = i > weighted[0]
        if kind in ("dense", "conv2d"):
            k = params[f"{r.name}/kernel"]
            if kind == "dense":
                gk, gb = cache.T @ d, d.sum(axis=0)
                d = d @ k.T if need else None
            else:
                d, gk, gb = _conv_backward(d, cache, k, r, need)
            grads[f"{r.name}/kernel"] = gk
            if f"{r.name}/bias" in params:
                grads[f"{r.name}/bias"] = gb
        elif kind in ("lstm", "gru"):
            k, rk = params[f"{r.name}/kernel"], params[f"{r.name}/recurrent_kernel"]
            with _steps_context():
                d, *g = (_lstm_backward if kind == "lstm" else _gru_backward)(d, cache, k, rk,
                                                                             need)
            grads.update(zip((f"{r.name}/{t}" for t in _RECURRENT_TENSORS), g, strict=True))
        elif kind == "embedding":   # ids get no gradient: a first layer
            ge = np.zeros_like(params[f"{r.name}/embeddings"])
            np.add.at(ge, cache, d)   # a repeated id adds up its gradients
            grads[f"{r.name}/embeddings"] = ge
            d = None
        elif kind in ("batch_norm", "layer_norm"):
            xhat, inv, batch, _mean, _var, m = cache
            gamma = params[f"{r.name}/gamma"]
            if kind == "layer_norm":   # statistics per sample (axis 1), gamma per feature
                axes, shape, stat = (0,), (1, -1), (-1, 1)
            else:
                axes, _ = _norm_axes(d)
                shape = stat = (-1, 1, 1, 1) if d.ndim == 4 else (1, -1)
            grads[f"{r.name}/gamma"] = (d * xhat).sum(axis=axes)
            grads[f"{r.name}/beta"] = d.sum(axis=axes)
            if need:
                dxhat = d * gamma.reshape(shape)
                if batch:   # through the batch statistics too
                    red = (1,) if kind == "layer_norm" else axes
                    s1 = dxhat.sum(axis=red).reshape(stat)
                    s2 = (dxhat * xhat).sum(axis=red).reshape(stat)
                    d = inv.reshape(stat) / m * (m * dxhat - s1 - xhat * s2)
                else:
                    d = dxhat * inv.reshape(stat)
        elif kind == "max_pool2d":
            g = d
            d = _pool_backward(lambda o, g=g, first=cache: np.where(first[o], g, 0.0), n, r)
        elif kind == "avg_pool2d":
            g = d / (r.layer.pool_size[0] * r.layer.pool_size[1])
            d = _pool_backward(lambda o, g=g: g, n, r)
        elif kind == "flatten":
            d = _to_channels_first(d.reshape(n, *r.input_shape))
        elif kind == "dropout":
            if cache is not None:
                d = d * cache
        elif kind == "activation":
            name = r.layer.name
            if name == "relu":
                d = d * (cache > 0)
            elif name == "sigmoid":
                d = d * (cache * (1.0 - cache))
            elif name == "tanh":
                d = d * (1.0 - cache * cache)
    if l2:   # the penalty's gradient: l2 times every penalised tensor (the kernels)
        for t in (t for r in resolved for t in r.tensors if t.penalised):
            grads[t.name] = grads[t.name] + l2 * params[t.name]
    return {name: grads[name] for name in spec.weight_shapes(trainable=True)}


def _moving_statistics(spec: ModelSpec, params: dict[str, np.ndarray], tape: list
                       ) -> dict[str, np.ndarray]:
    """The state tensors a training pass leaves behind (`zoo.layers.BatchNorm`):
    moving = momentum * moving + (1 - momentum) * batch value, the moving variance from the
    biased batch variance, or the unbiased one (times count / (count - 1)) when the layer
    says so. Empty for a model without state."""
    state: dict[str, np.ndarray] = {}
    for r, cache in zip(spec.resolved, tape, strict=True):
        if r.kind != "batch_norm":
            continue
        _xhat, _inv, batch, mean, var, count = cache
        if not batch:
            raise ConfigError("moving statistics come from a training-mode pass.")
        if r.layer.moving_variance == "unbiased":
            if count < 2:
                raise ConfigError("a batch with one value per channel has no unbiased "
                                  "variance; use batches of at least 2 samples with BatchNorm.")
            var = var * (count / (count - 1))
        mom = float(r.layer.momentum)
        for short, batch_value in (("moving_mean", mean), ("moving_variance", var)):
            name = f"{r.name}/{short}"
            state[name] = params[name] * mom + batch_value * (1.0 - mom)
    return state


def _chunk(spec: ModelSpec) -> int | None:
    """Samples per forward chunk that keep every im2col patch matrix, and every recurrent
    layer's steps (its input's share x @ W, gates, states: about (2 G + 3) u numbers per
    step), within `_PATCH_BUDGET` (None: a model with neither runs in one piece)."""
    gates = {"lstm": 4, "gru": 3}
    per_sample = [int(np.prod(r.layer.kernel_size)) * r.input_shape[2]
                  * r.output_shape[0] * r.output_shape[1]
                  for r in spec.resolved if r.kind == "conv2d"]
    per_sample += [r.input_shape[0] * ((2 * gates[r.kind] + 3) * r.layer.units
                                       + r.input_shape[1])
                   for r in spec.resolved if r.kind in gates]
    return max(1, _PATCH_BUDGET // max(per_sample)) if per_sample else None


def _chunked(spec: ModelSpec, fn: Callable[[np.ndarray, list | None], np.ndarray],
             X: np.ndarray, masks: list[np.ndarray] | None) -> np.ndarray:
    n, size = len(X), _chunk(spec)
    if size is None or n <= size:
        return fn(X, masks)
    parts = [fn(X[s:s + size], None if masks is None else [m[s:s + size] for m in masks])
             for s in range(0, n, size)]
    return np.concatenate(parts)


def _data_loss(spec: ModelSpec, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The model's loss (`spec.loss`, mean over the batch) and its gradient w.r.t. `z`."""
    n = len(z)
    if spec.loss == "hinge":
        labels = np.asarray(y, np.int64).ravel()
        loss = hinge_loss(z, labels)
        idx = np.arange(n)
        active = (z - z[idx, labels][:, None] + 1.0 > 0).astype(np.float64)
        active[idx, labels] = 0.0
        dz = active
        dz[idx, labels] = -active.sum(axis=1)
        dz /= n
    elif spec.loss == "cross_entropy":
        labels = np.asarray(y, np.int64).ravel()
        loss = cross_entropy_with_logits(z, labels)
        dz = softmax(z)
        dz[np.arange(n), labels] -= 1.0
        dz /= n
    elif spec.loss == "quadratic":
        loss = quadratic_loss(z, y)
        a = sigmoid(z)
        dz = (a - _one_hot(y, z.shape[1])) * a * (1.0 - a) / n
    elif spec.loss == "binary_cross_entropy":
        t = np.asarray(y, np.float64).reshape(-1, 1)
        loss = binary_cross_entropy_with_logits(z, t)
        dz = (sigmoid(z) - t) / n
    elif spec.loss == "mse":
        t = np.asarray(y, np.float64).reshape(-1, 1)
        loss = mse(z, t)
        dz = 2.0 * (z - t) / n
    else:  # pragma: no cover - zoo.models checks the loss names
        raise ConfigError(f"the numpy reference has no loss {spec.loss!r}.")
    return loss, dz


def _penalty(spec: ModelSpec, params: dict[str, np.ndarray], l2: float) -> float:
    """0.5 * l2 * the sum of the squared penalised tensors (Dense and Conv2D kernels)."""
    return 0.5 * l2 * sum(float(np.sum(params[t.name] ** 2))
                          for r in spec.resolved for t in r.tensors if t.penalised)


def _details(spec: ModelSpec, weights: dict[str, Any], X: np.ndarray, y: np.ndarray,
             masks: list[np.ndarray] | None, l2: float
             ) -> tuple[np.ndarray, float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One training-mode pass: (raw outputs, loss, gradients of the trained tensors, the
    state after the batch's moving-statistics update)."""
    params = _params(spec, weights, X)
    z, tape = _run(spec, params, X, _scales(spec, masks, len(X)), training=True)
    loss, dz = _data_loss(spec, z, y)
    grads = _backward(spec, params, tape, dz, l2)
    if l2:
        loss += _penalty(spec, params, l2)
    return z, float(loss), grads, _moving_statistics(spec, params, tape)


# ----------------------------------------------------------------------------- public API
def forward(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
            masks: list[np.ndarray] | None = None) -> np.ndarray:
    """The model's raw output (logits, or values for regression) in float64. `masks`: one
    0/1 mask per Dropout layer (`zoo.specs.dropout_masks`), applied as h * (mask / (1 -
    rate)); without them dropout is the identity."""
    params = _params(spec, weights, X)
    return _chunked(spec, lambda Xc, mc: _run(spec, params, Xc, _scales(spec, mc, len(Xc)))[0],
                    X, masks)


def rounding_scale(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                   masks: list[np.ndarray] | None = None, dtype: str = "float32",
                   training: bool = False) -> np.ndarray:
    """A per-output scale of the rounding a `dtype` forward pass may carry: machine epsilon
    times the magnitude of what each output sums, |x| propagated with no cancellation
    through |kernel| (matmul or convolution) and |bias|, the pools (max or mean of the
    magnitudes), Flatten and the dropout scaling; relu and linear keep the magnitude, sigmoid
    and tanh outputs are bounded by 1. Two correct implementations that sum in different
    orders differ by a small fraction of it (measured: under 0.1 of it for the digits MLP in
    float32), while a different computation differs by the outputs' size. A normalisation
    multiplies the magnitudes by |gamma| / sqrt(var + eps), with the statistics of the real
    pass (the batch's with `training`, the moving ones without). An Embedding looks up
    |embeddings|; an LSTM or GRU carries each step's rounding into the next
    (`_recurrent_bound`)."""
    weights64 = _params(spec, weights, X)
    params = {k: np.abs(v) for k, v in weights64.items()}

    def bound(Xc, mc):
        scales = _scales(spec, mc, len(Xc))
        cached = None
        if any(r.kind in _NEEDS_REAL_PASS for r in spec.resolved):
            tape = _run(spec, weights64, Xc, scales, training=training)[1]
            cached = {r.name: c for r, c in zip(spec.resolved, tape, strict=True)
                      if r.kind in _NEEDS_REAL_PASS}
        return _run(spec, params, np.abs(np.asarray(Xc, np.float64)), scales, bound=True,
                    real=cached)[0]

    a = bound(X, masks) if training else _chunked(spec, bound, X, masks)
    return float(np.finfo(np.dtype(dtype)).eps) * a


def loss_and_grads(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
                   masks: list[np.ndarray] | None = None, l2: float = 0.0
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """The batch loss (`spec.loss`, mean over samples, plus 0.5 * l2 * the sum of squared
    Dense and Conv2D kernels) and its gradient with respect to every weight, in model order,
    derived by hand (no autodiff)."""
    _, loss, grads, _state = _details(spec, weights, X, y, masks, l2)
    return loss, grads


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """The float64 reference's {"logits", "loss", "grads", "state"} of one training-mode batch
    at `weights`, in the form every framework's `train.step_details` returns (see
    `zoo.diagnose`): "grads" of the trained tensors, "state" the moving statistics after the
    batch's update ({} for a model without state)."""
    z, loss, grads, state = _details(model_spec, weights, X, y, masks, l2)
    return {"logits": z, "loss": loss, "grads": grads, "state": state}


class ReferenceModel(dict):
    """The numpy reference's "model": a dict of float64 arrays (canonical names, model
    order) that knows its spec, so that `set_weights` can check what it is given."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
        super().__init__(weights)
        self.spec = spec


def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None, dtype: str = "float64"
          ) -> ReferenceModel:
    """The model's weights as float64 arrays: `init` (canonical layout), or the zoo's seeded
    initial weights `zoo.specs.init_weights(spec, 0, "float64")`."""
    if dtype != "float64":
        raise ConfigError(f"the numpy reference computes in float64 only, got dtype {dtype!r}; "
                          "build it with dtype='float64'.")
    if init is None:
        init = init_weights(spec, 0, "float64")
    check_canonical(init, spec)
    return ReferenceModel(spec, {name: np.array(init[name], dtype=np.float64)
                                 for name in spec.weight_shapes()})


def get_weights(model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of the model's weights (canonical layout, model order)."""
    return {k: np.array(v, dtype=np.float64) for k, v in model.items()}


def set_weights(model: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> None:
    """Load canonical `weights` (copied to float64), after checking every name and shape
    (`zoo.specs.check_canonical`)."""
    spec = getattr(model, "spec", None)
    check_canonical(weights, spec if spec is not None
                    else {k: np.shape(v) for k, v in model.items()})
    for name in list(model):
        model[name] = np.array(weights[name], dtype=np.float64)


def predict(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """`spec.output` of the raw outputs, never any dropout: softmax probabilities (N, C),
    sigmoid activations ((N, 1) logistic, (N, C) nielsen) or values (N, 1)."""
    check_inputs(spec, X, what="zoo.reference")
    z = forward(spec, weights, X)
    if spec.output == "softmax":
        return softmax(z)
    return sigmoid(z) if spec.output == "sigmoid" else z


def evaluate(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray
             ) -> dict[str, float]:
    """{"loss", "accuracy"} (classification: argmax of the outputs; binary: output > 0, i.e.
    sigmoid > 0.5) or {"loss", "mse"} (regression). The loss is the model's data loss (mean
    over X, no L2 term), without dropout."""
    check_inputs(spec, X, y, what="zoo.reference")
    z = forward(spec, weights, X)
    loss = _data_loss(spec, z, y)[0]
    if spec.task == "regression":
        return {"loss": loss, "mse": loss}
    pred = (z[:, 0] > 0).astype(np.int64) if spec.task == "binary" else z.argmax(axis=1)
    return {"loss": loss, "accuracy": float(np.mean(pred == np.asarray(y).ravel()))}


class NumpyOptimizer:
    """Float64 numpy implementation of every canonical optimizer, following Keras 3's formulas
    (the zoo's reference semantics; the framework translations are tested against it)."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self, params, grads) -> None:
        """Update `params` in place from `grads`: two dicts keyed by weight name, or two
        sequences of arrays in the same order."""
        s = self.spec
        self.t += 1
        if isinstance(params, dict):
            triples = [(name, params[name], g) for name, g in grads.items()]
        else:
            triples = [(str(i), p, g) for i, (p, g) in enumerate(zip(params, grads, strict=True))]
        for name, p, g in triples:
            g = np.asarray(g, dtype=np.float64)
            st = self.state.setdefault(name, {})
            if s.name == "sgd":
                p -= s.lr * g
            elif s.name in ("momentum", "nesterov"):
                m = st.setdefault("m", np.zeros_like(p))
                m *= s.momentum
                m -= s.lr * g
                p += (s.momentum * m - s.lr * g) if s.name == "nesterov" else m
            elif s.name in ("rmsprop", "centered_rmsprop"):
                v = st.setdefault("v", np.zeros_like(p))
                v[...] = s.rho * v + (1 - s.rho) * g * g
                denom = v
                if s.name == "centered_rmsprop":
                    mg = st.setdefault("mg", np.zeros_like(p))
                    mg[...] = s.rho * mg + (1 - s.rho) * g
                    denom = v - mg * mg
                inc = s.lr * g / np.sqrt(denom + s.epsilon)
                if s.momentum > 0:
                    m = st.setdefault("m", np.zeros_like(p))
                    m[...] = s.momentum * m + inc
                    inc = m
                p -= inc
            elif s.name == "adam":
                m = st.setdefault("m", np.zeros_like(p))
                v = st.setdefault("v", np.zeros_like(p))
                m += (g - m) * (1 - s.beta_1)
                v += (g * g - v) * (1 - s.beta_2)
                alpha = s.lr * np.sqrt(1 - s.beta_2 ** self.t) / (1 - s.beta_1 ** self.t)
                p -= alpha * m / (np.sqrt(v) + s.epsilon)
            elif s.name == "adagrad":
                acc = st.setdefault("acc", np.full_like(p, s.initial_accumulator))
                acc += g * g
                p -= s.lr * g / np.sqrt(acc + s.epsilon)
            else:  # pragma: no cover - OptimizerSpec validates the name
                raise ValueError(s.name)


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None) -> History:
    """The float64 reference training loop: the shared batch order, the shared dropout masks
    ("shared" mode; otherwise dropout is the identity), the batch loss before each update,
    and `NumpyOptimizer`. Returns a `zoo.specs.History`.

    `init`: canonical initial weights (default `zoo.specs.init_weights(spec, 0, "float64")`).
    Like every framework, training stops at the first non-finite loss: `History.stopped_at`
    is that step, the losses end with it, and the weights are the ones it started from (the
    last finite ones)."""
    from zoo.data import batch_order

    every = record_every(record_weights)
    check_inputs(model_spec, X, y, what="zoo.reference")
    params = get_weights(build(model_spec, init))
    opt = NumpyOptimizer(train_spec.optimizer)
    losses: list[float] = []
    # the whole run's recorded steps, written before the first (StepWeights.allocate);
    # each epoch writes into the rows it can record, ceil(steps per epoch / every)
    steps_per_epoch = math.ceil(len(X) / train_spec.batch_size)
    slots = math.ceil(steps_per_epoch / every) if every else 0
    snaps = StepWeights.allocate({k: np.shape(v) for k, v in params.items()},
                                 steps_per_epoch * train_spec.epochs // every, np.float64) \
        if every else None
    epoch_seconds: list[float] = []
    stopped_at: int | None = None
    for epoch in range(train_spec.epochs):
        start = time.perf_counter()
        block = snaps.reserve(min(slots, snaps.capacity - len(snaps))) if every else {}
        count = 0
        for step, idx in enumerate(batch_order(len(X), train_spec.batch_size, train_spec.seed,
                                               epoch, shuffle=train_spec.shuffle)):
            masks = None
            if train_spec.dropout_mode == "shared":
                masks = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step) or None
            # A diverging run overflows: the frameworks say so by the stop below, not by
            # warnings (which pytest would turn into errors), so neither does the reference.
            with np.errstate(over="ignore", invalid="ignore"):
                _z, loss, grads, state = _details(model_spec, params, X[idx], y[idx], masks,
                                                  train_spec.l2)
                losses.append(loss)
                if not np.isfinite(loss):
                    stopped_at = len(losses) - 1
                    break
                params.update(state)   # the batch's moving statistics (BatchNorm)
                opt.step(params, grads)
            if progress is not None:
                progress(epoch, step, loss)
            if records(every, len(losses) - 1):
                for k, v in params.items():
                    block[k][count] = v
                count += 1
        if count:
            snaps.advance(count)
        epoch_seconds.append(time.perf_counter() - start)
        if stopped_at is not None:
            break
    return History(framework=FRAMEWORK, losses=np.asarray(losses), weights=params,
                   epoch_seconds=epoch_seconds, step_weights=snaps,
                   stopped_at=stopped_at, weights_every=every or 1)
