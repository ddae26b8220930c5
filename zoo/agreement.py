"""When two trainings agree: the tolerances, the first step at which two histories part, and
the per-step differences of losses and weights.

The comparison harness (`zoo.compare`) fills its report from `differences`; the diagnosis
(`zoo.diagnose`) starts from `first_divergence`. Both import this module, which imports
neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo.errors import ConfigError, ZooError
from zoo.specs import History

__all__ = ["TOLERANCES", "Differences", "differences", "exceeds", "first_divergence",
           "max_abs_diff", "same_stride", "step_diffs"]

#: Agreement is |a - b| <= ATOL + RTOL * |b| for every loss and weight (docs/porting.md:
#: with all recipes applied, float32 frameworks differ only by rounding, ~1e-7 after an epoch).
TOLERANCES = {"float32": (1e-6, 1e-5), "float64": (1e-12, 1e-10)}


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest |a - b| over every tensor of two weight dicts with the same names."""
    if set(a) != set(b):
        raise ZooError(f"weights have different names: {sorted(a)} vs {sorted(b)}.")
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in a)


#: Elements of one tensor's steps compared at a time: the float64 scratch of one pass over
#: two records (`_Scratch`, 2 MB a buffer), allocated once per comparison and reused, since
#: a fresh buffer's first write is what costs on a virtual machine (docs/benchmarks.md).
_CHUNK = 1 << 18


class _Scratch:
    """Float64 buffers for `_per_step`, reused across tensors and steps."""

    def __init__(self) -> None:
        self.size = 0
        self.d = self.t = np.zeros(0)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n > self.size:
            self.size = max(n, _CHUNK)
            self.d, self.t = np.empty(self.size), np.empty(self.size)
        return self.d[:n], self.t[:n]


def _per_step(a: np.ndarray, b: np.ndarray, atol: float | None = None, rtol: float = 0.0,
              scratch: _Scratch | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """For stacked (n, ...) arrays, per step: max |a - b|, and (atol given) whether any
    element leaves b by more than atol + rtol * |b| (else None). One pass in float64, a
    chunk of steps at a time, through `scratch`'s buffers."""
    n = len(a)
    diff = np.zeros(n)
    bad = np.zeros(n, bool) if atol is not None else None
    size = int(np.prod(a.shape[1:], dtype=np.int64))
    if size == 0 or n == 0:     # an empty tensor differs nowhere
        return diff, bad
    scratch = scratch or _Scratch()
    a2, b2 = a.reshape(n, size), b.reshape(n, size)
    step = max(1, _CHUNK // size)
    for i in range(0, n, step):
        x, y = a2[i:i + step], b2[i:i + step]
        d, t = (v.reshape(len(x), size) for v in scratch.take(len(x) * size))
        np.subtract(x, y, out=d, dtype=np.float64)
        np.abs(d, out=d)
        d.max(axis=1, out=diff[i:i + step])
        if bad is not None:
            np.abs(y, out=t, dtype=np.float64)
            t *= rtol
            t += atol
            bad[i:i + step] = (d > t).any(axis=1)
    return diff, bad


def _weights_pass(h: History, ref: History, m: int, atol: float | None = None,
                  rtol: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `m` recorded steps of two weight records, a tensor (all its steps) at a time:
    per step, the largest |difference| over every tensor and (atol given) whether any
    element is out of tolerance."""
    a, b = h.step_weights.tensors, ref.step_weights.tensors
    if set(a) != set(b):
        raise ZooError(f"weights have different names: {sorted(a)} vs {sorted(b)}.")
    diff = np.zeros(m)
    bad = np.zeros(m, bool) if atol is not None else None
    if h is ref:      # a record against itself differs nowhere
        return diff, bad
    scratch = _Scratch()
    for k in a:
        d, out = _per_step(a[k][:m], b[k][:m], atol, rtol, scratch)
        np.maximum(diff, d, out=diff)
        if bad is not None:
            bad |= out
    return diff, bad


def step_diffs(h: History, ref: History) -> np.ndarray:
    """Per recorded step (the first min(len) of both), the largest |weight difference| over
    every tensor, computed a tensor (all its steps) at a time."""
    return _weights_pass(h, ref, min(len(h.step_weights), len(ref.step_weights)))[0]


def exceeds(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> bool:
    """Whether any element of `a` leaves `b` by more than atol + rtol * |b|."""
    return bool(np.any(np.abs(a - b) > atol + rtol * np.abs(b)))


def same_stride(h: History, ref: History) -> None:
    """Two histories' weight records must be taken at the same stride to be compared."""
    if h.step_weights and ref.step_weights and h.weights_every != ref.weights_every:
        raise ConfigError(f"{h.framework} recorded its weights every {h.weights_every} steps "
                          f"but {ref.framework} every {ref.weights_every}; record both at the "
                          "same stride.")


def first_divergence(h: History, ref: History, tolerance: tuple[float, float],
                     _bad: np.ndarray | None = None) -> int | None:
    """The first global step at which `h`'s loss or weights leave `ref`'s by more than
    `tolerance` (atol, rtol), or None when they agree throughout. With weights recorded every
    k > 1 steps (`History.weights_every`), a divergence seen in the weights only is reported
    at the first recorded step that shows it (the true step is at most k - 1 earlier)."""
    atol, rtol = tolerance
    same_stride(h, ref)
    n = min(len(h.losses), len(ref.losses))
    la, lb = np.asarray(h.losses[:n], np.float64), np.asarray(ref.losses[:n], np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf after a divergence
        bad_loss = np.abs(la - lb) > atol + rtol * np.abs(lb)
    first = int(np.argmax(bad_loss)) if bad_loss.any() else None
    if h.step_weights and ref.step_weights:
        steps = ref.recorded_steps()[:min(len(h.step_weights), len(ref.step_weights))]
        m = len(steps) if first is None else int(np.searchsorted(steps, first))
        # `differences` passes the per-step flags of its own pass over the records (`_bad`)
        bad = _weights_pass(h, ref, m, atol, rtol)[1] if _bad is None else _bad[:m]
        if bad.any():
            return int(steps[int(np.argmax(bad))])
    elif first is None and any(
            exceeds(np.asarray(h.weights[k], np.float64), np.asarray(ref.weights[k], np.float64),
                    atol, rtol) for k in h.weights):
        return n - 1
    if first is None and len(h.losses) != len(ref.losses):
        return n
    return first


@dataclass
class Differences:
    """One history against a reference: per-step |loss difference|, the largest weight
    difference after every recorded step (and which global step each is), the largest of
    each, and the first divergent step."""

    loss_diff: np.ndarray
    max_loss_diff: float
    max_weight_diff: float
    weight_diff: np.ndarray | None
    weight_steps: np.ndarray | None
    first_divergent_step: int | None


def differences(h: History, ref: History, tolerance: tuple[float, float]) -> Differences:
    """`h` against `ref`, step by step (see `Differences`)."""
    n = min(len(h.losses), len(ref.losses))
    with np.errstate(invalid="ignore"):  # inf - inf after a divergence
        loss_diff = np.abs(np.asarray(h.losses[:n], np.float64)
                           - np.asarray(ref.losses[:n], np.float64))
    weight_diff = weight_steps = bad = None
    if h.step_weights and ref.step_weights:
        same_stride(h, ref)
        # one pass over both records gives the differences and the tolerance flags
        weight_diff, bad = _weights_pass(h, ref, min(len(h.step_weights),
                                                     len(ref.step_weights)), *tolerance)
        weight_steps = ref.recorded_steps()[:len(weight_diff)]
    return Differences(loss_diff, float(np.max(loss_diff)) if n else 0.0,
                       max_abs_diff(h.weights, ref.weights), weight_diff, weight_steps,
                       first_divergence(h, ref, tolerance, bad))
