"""Checkpoints of a torch training run (`zoo.checkpoint` holds the file format and the checks).

The state saved at the end of every epoch: the model's weights (canonical layout, a BatchNorm's
running statistics included: they are weight-table rows, `torch_models.model`), the
optimizer's `state_dict()["state"]` (momentum buffers, Adam's moments and `step` tensors, ...)
flattened to `<param index>/<key>` arrays (indices into the optimizer's own parameter list:
the parameters that require gradients, so never an LSTM's frozen `bias_hh_l0`, which is zero
and needs no saving beyond the canonical bias), and torch's global generator state (what native
dropout draws from). The training loop builds the model from the saved weights, and `restore` loads the
rest into a fresh optimizer of the same spec; the optimizer's `param_groups` come from that fresh optimizer (the fingerprint guarantees
the same hyperparameters). Nothing is pickled.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from zoo.checkpoint import Checkpoint, State

__all__ = ["restore", "save"]


def _optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    out = {}
    for idx, slots in optimizer.state_dict()["state"].items():
        for key, value in slots.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{idx}/{key}"] = t.detach().cpu().clone().numpy()
    return out


def save(ckpt: Checkpoint, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
         get_weights, losses: list[float], epoch_seconds: list[float]) -> None:
    """Write the state after `epoch` completed epochs (atomically, see `zoo.checkpoint`)."""
    ckpt.save(State(epoch=epoch, weights=get_weights(model),
                    optimizer=_optimizer_arrays(optimizer), losses=list(losses),
                    epoch_seconds=list(epoch_seconds),
                    rng={"torch": torch.get_rng_state().numpy()}))


def restore(state: State, optimizer: torch.optim.Optimizer) -> None:
    """Load `state`'s optimizer state into `optimizer` and its generator state into torch
    (the model is built from `state.weights`)."""
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in state.optimizer.items():
        idx, key = name.split("/", 1)
        slots.setdefault(int(idx), {})[key] = torch.from_numpy(np.array(value))
    optimizer.load_state_dict({"state": slots,
                               "param_groups": optimizer.state_dict()["param_groups"]})
    if "torch" in state.rng:
        torch.set_rng_state(torch.from_numpy(np.array(state.rng["torch"])))
