"""Float64 numpy references: activations, losses, forward passes and hand-derived gradients.

These are the oracles every framework is tested against: the same formulas in plain numpy,
computed in float64, with no framework involved. Losses take logits (never probabilities)
and reduce by the mean over the batch, as every framework in the zoo does.
"""

from __future__ import annotations

import time

import numpy as np

from zoo.specs import ModelSpec, layer_sizes

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "cross_entropy_with_logits",
    "forward",
    "hinge_loss",
    "log_softmax",
    "loss_and_grads",
    "mse",
    "sigmoid",
    "softmax",
]


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
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


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


def _layers(spec: ModelSpec, weights: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, (n_in, n_out) in enumerate(layer_sizes(spec)):
        k = np.asarray(weights[f"dense_{i}/kernel"], np.float64)
        b = np.asarray(weights[f"dense_{i}/bias"], np.float64)
        if k.shape != (n_in, n_out) or b.shape != (n_out,):
            raise ValueError(f"dense_{i}: expected kernel {(n_in, n_out)} and bias {(n_out,)}, "
                             f"got {k.shape} and {b.shape} (canonical layout is Keras's (in, out)).")
        out.append((k, b))
    return out


def forward(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
            masks: list[np.ndarray] | None = None) -> np.ndarray:
    """The model's raw output (logits, or values for regression) in float64.

    Hidden layers are Dense -> (Dropout as h * mask / (1 - rate) when `masks` are given) -> ReLU.
    """
    return _forward(spec, weights, X, masks)[0]


def rounding_scale(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                   masks: list[np.ndarray] | None = None, dtype: str = "float32") -> np.ndarray:
    """A per-output scale of the rounding a `dtype` forward pass may carry: machine epsilon
    times the magnitude of what each output sums, |x| propagated through |kernel| and |bias|
    (and the dropout scaling) with no cancellation. Two correct implementations that sum in
    different orders differ by a small fraction of it (measured: under 0.1 of it for the
    digits MLP in float32), while a different computation differs by the outputs' size."""
    a = np.abs(np.asarray(X, np.float64))
    layers = _layers(spec, weights)
    for i, (k, b) in enumerate(layers):
        a = a @ np.abs(k) + np.abs(b)
        if i < len(layers) - 1 and masks is not None and spec.dropout > 0:
            a = a * (np.asarray(masks[i], np.float64) / (1.0 - spec.dropout))
    return float(np.finfo(np.dtype(dtype)).eps) * a


def _forward(spec, weights, X, masks):
    layers = _layers(spec, weights)
    h = np.asarray(X, np.float64)
    cache = []
    for i, (k, b) in enumerate(layers):
        z = h @ k + b
        if i == len(layers) - 1:
            cache.append((h, None, None))
            return z, cache
        scale = None
        if masks is not None and spec.dropout > 0:
            scale = np.asarray(masks[i], np.float64) / (1.0 - spec.dropout)
            z = z * scale
        cache.append((h, z, scale))
        h = np.maximum(z, 0.0)
    raise AssertionError("unreachable")


def loss_and_grads(spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
                   masks: list[np.ndarray] | None = None, l2: float = 0.0
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """The batch loss (mean over samples, plus 0.5 * l2 * sum of squared kernels) and its
    gradient with respect to every weight, derived by hand (no autodiff)."""
    z, cache = _forward(spec, weights, X, masks)
    n = len(z)
    if spec.task == "classification" and spec.name == "svm":
        labels = np.asarray(y, np.int64).ravel()
        loss = hinge_loss(z, labels)
        idx = np.arange(n)
        active = (z - z[idx, labels][:, None] + 1.0 > 0).astype(np.float64)
        active[idx, labels] = 0.0
        dz = active
        dz[idx, labels] = -active.sum(axis=1)
        dz /= n
    elif spec.task == "classification":
        labels = np.asarray(y, np.int64).ravel()
        loss = cross_entropy_with_logits(z, labels)
        dz = softmax(z)
        dz[np.arange(n), labels] -= 1.0
        dz /= n
    elif spec.task == "binary":
        t = np.asarray(y, np.float64).reshape(-1, 1)
        loss = binary_cross_entropy_with_logits(z, t)
        dz = (sigmoid(z) - t) / n
    else:
        t = np.asarray(y, np.float64).reshape(-1, 1)
        loss = mse(z, t)
        dz = 2.0 * (z - t) / n
    grads: dict[str, np.ndarray] = {}
    layers = _layers(spec, weights)
    for i in range(len(layers) - 1, -1, -1):
        h, _, _ = cache[i]
        k = layers[i][0]
        grads[f"dense_{i}/kernel"] = h.T @ dz + l2 * k
        grads[f"dense_{i}/bias"] = dz.sum(axis=0)
        if i > 0:
            dh = dz @ k.T
            _, zprev, scale = cache[i - 1]
            dz = dh * (zprev > 0)
            if scale is not None:
                dz = dz * scale
    if l2:
        loss += 0.5 * l2 * sum(float(np.sum(k ** 2)) for k, _ in layers)
    return float(loss), {k: grads[k] for k in sorted(grads, key=_order)}


def _order(name: str) -> tuple[int, int]:
    layer, kind = name.split("/")
    return int(layer.split("_")[1]), 0 if kind == "kernel" else 1


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


def train(model_spec: ModelSpec, train_spec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray], *, record_weights: bool | int = False, progress=None):
    """The float64 reference training loop: the shared batch order, the shared dropout masks,
    the batch loss before each update, and `NumpyOptimizer`. Returns a `zoo.specs.History`."""
    from zoo.data import batch_order
    from zoo.specs import History, dropout_masks, record_every, records

    every = record_every(record_weights)

    params = {k: np.array(v, dtype=np.float64) for k, v in init.items()}
    opt = NumpyOptimizer(train_spec.optimizer)
    losses: list[float] = []
    snaps: list[dict[str, np.ndarray]] = []
    epoch_seconds: list[float] = []
    for epoch in range(train_spec.epochs):
        start = time.perf_counter()
        for step, idx in enumerate(batch_order(len(X), train_spec.batch_size, train_spec.seed,
                                               epoch, shuffle=train_spec.shuffle)):
            masks = None
            if train_spec.dropout_mode == "shared":
                masks = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step) or None
            loss, grads = loss_and_grads(model_spec, params, X[idx], y[idx], masks, train_spec.l2)
            losses.append(loss)
            opt.step(params, grads)
            if progress is not None:
                progress(epoch, step, loss)
            if records(every, len(losses) - 1):
                snaps.append({k: v.copy() for k, v in params.items()})
        epoch_seconds.append(time.perf_counter() - start)
    return History(framework="numpy", losses=np.asarray(losses), weights=params,
                   epoch_seconds=epoch_seconds, step_weights=snaps if every else None,
                   weights_every=every or 1)


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """The float64 reference's {"logits", "loss", "grads"} of one batch at `weights`, in the
    form every framework's `train.step_details` returns (see `zoo.diagnose`)."""
    loss, grads = loss_and_grads(model_spec, weights, X, y, masks, l2)
    return {"logits": forward(model_spec, weights, X, masks), "loss": loss, "grads": grads}
