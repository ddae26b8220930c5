"""torch weights in torch's native format: the model's `state_dict` saved with `torch.save` to a
`.pt` file, plus the JSON sidecar `<path>.json` of `zoo.interchange` (model spec, shapes, dtype).
The keys are the weight tables' torch names (`dense_0.weight`, `conv2d_1.bias`, ...): what any
`nn.Module` with those children loads with `load_state_dict`. A BatchNorm's entries are its
`weight`, `bias`, `running_mean` and `running_var` (gamma, beta and the moving statistics)
and `num_batches_tracked`, which no weight table holds (`torch_models.model.UNTABLED`): it is
written, as `state_dict()` has it, so that torch's own modules load the file strictly, and
ignored when reading (a file without it loads too). Recurrent layers are saved under
torch's own `nn.LSTM` / `nn.GRU` names (`lstm_0.weight_ih_l0`, ..., `bias_hh_l0`), so a plain
torch module loads the file; an LSTM's `bias_hh_l0` is written as the zeros the zoo keeps it at,
and read back summed into the canonical bias (the weight table's bias_ih + bias_hh), so a
file from a torch LSTM trained with both biases converts exactly too.

Loading is safe only: `torch.load(path, weights_only=True)`, which refuses any pickle that is
not plain tensors and containers; the tensors are then placed through the weight tables of
the sidecar's spec (every missing or unplaced key and every wrong shape is named) and loaded
into a freshly built model of that spec, in the sidecar's dtype.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from torch_models import model as M
from zoo import interchange as ic
from zoo.errors import ConfigError, DataError
from zoo.layers import from_native
from zoo.specs import ModelSpec

__all__ = ["FORMAT", "load", "save"]

FORMAT = "torch"


def save(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
         force: bool = False) -> Path:
    """Write the `state_dict` of `model_spec` with `weights` to `path` (atomically) and its sidecar."""
    return ic.save_with(FORMAT, functools.partial(_write, model_spec, weights), model_spec,
                        weights, path, force)


def _write(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    model = M.build(model_spec, weights, dtype)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with ic.temp_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)
        ic.replace_atomically(tmp, path)


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of a `.pt` state_dict written by `save`."""
    return ic.load_with(FORMAT, _read, path)


def _read(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    try:
        with warnings.catch_warnings():
            # a non-torch pickle (protocol != 2) warns before it is refused: the error says it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, IndexError, ... on bad bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{str(path)!r} is not a torch state_dict that loads safely "
                        f"(torch.load(weights_only=True) refused it: {first}); the zoo never "
                        "unpickles arbitrary objects: pass a state_dict written by "
                        "`zoo train --save` or `zoo convert`.") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise DataError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict of "
                        "tensors; pass a file written by `zoo train --save` or `zoo convert`.")
    try:
        weights = from_native({k: v.numpy() for k, v in M.tabled(state).items()}, spec.resolved,
                              FORMAT)
    except ConfigError as exc:
        raise DataError(f"the state_dict in {str(path)!r} does not fit model {spec.name!r} of "
                        f"its sidecar ({str(exc).rstrip('.')}); the file and its .json sidecar "
                        "belong to different models: re-save the weights with `zoo train "
                        "--save` or `zoo convert`.") from None
    return M.get_weights(M.build(spec, weights, dtype))  # in the sidecar's dtype
