"""The zoo's models, each an ordered list of canonical layers (`zoo.layers`), a loss and an
output kind. This table is the one place a new model built from existing layers is added:
every framework builds it from the list, the numpy reference computes it, and every command
runs it.

Losses (all from the model's raw outputs, mean over the batch):
- "cross_entropy": softmax cross-entropy of integer labels from logits;
- "hinge": the multiclass hinge (SVM) loss of CS231n, margin 1 (seed 003);
- "binary_cross_entropy": sigmoid cross-entropy of 0/1 targets (N, 1) from logits;
- "mse": mean squared error of (N, 1) targets;
- "quadratic": seed 001's cost C = 1/(2n) sum_x ||y(x) - a(x)||^2 with a = sigmoid(z) and y the
  one-hot target: half the squared error SUMMED over the outputs, averaged over the samples
  (Keras's `mse` would also average over the outputs: a factor 2/C away).

Outputs (what `predict` returns): "softmax" probabilities, "sigmoid" (P(y=1) for one unit,
the activations of every unit for nielsen), "identity" (regression values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.layers import (
    GRU,
    LSTM,
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2D,
)

if TYPE_CHECKING:
    from zoo.specs import ModelSpec

__all__ = ["ARCHITECTURES", "LOSSES", "Architecture"]

LOSSES = ("cross_entropy", "hinge", "binary_cross_entropy", "mse", "quadratic")
OUTPUTS = ("softmax", "sigmoid", "identity")


@dataclass(frozen=True)
class Architecture:
    name: str
    task: str            # classification, binary, regression
    loss: str            # one of LOSSES
    output: str          # one of OUTPUTS
    description: str
    layers: Callable[[ModelSpec], list[Layer]]
    image: bool = False  # takes (H, W, C) images; else flat (features,) vectors
    #: recurrent models: "rows" reads images row by row ((H, W * C) sequences), "tokens"
    #: reads token-id sequences (T,) of a token dataset through an Embedding
    sequence: str | None = None
    default_lr: float = 0.1
    #: the optimizer the commands use when none is given (recurrent models on tokens need
    #: Adam: plain SGD does not carry the first token's gradient through 10 steps in 20 epochs)
    default_optimizer: str = "sgd"
    default_dropout: float = 0.0
    default_hidden: tuple[int, ...] = ()

    @property
    def loss_description(self) -> str:
        return {"cross_entropy": "categorical cross-entropy", "hinge": "multiclass hinge",
                "binary_cross_entropy": "binary cross-entropy", "mse": "mean squared error",
                "quadratic": "quadratic cost 1/(2n) sum ||y - sigmoid(z)||^2"}[self.loss]


def _one_dense(spec: ModelSpec) -> list[Layer]:
    return [Dense(spec.n_outputs)]


def _mlp(spec: ModelSpec) -> list[Layer]:
    layers: list[Layer] = []
    for units in spec.hidden:  # Dropout(0) is the identity: left out (no mask to share)
        layers += [Dense(units), *([Dropout(spec.dropout)] if spec.dropout else []),
                   Activation("relu")]
    return [*layers, Dense(spec.n_outputs)]


def _cnn(spec: ModelSpec) -> list[Layer]:
    return [Conv2D(8, 3, padding="same"), Activation("relu"), MaxPool2D(2),
            Conv2D(16, 3, strides=2, padding="same"), Activation("relu"), Flatten(),
            Dense(spec.n_outputs)]


def _cnn_bn(spec: ModelSpec) -> list[Layer]:
    """The cnn with a BatchNorm after each convolution (convolutions without a bias: the
    BatchNorm's beta replaces it, and a bias before a training-mode BatchNorm gets an exactly
    zero gradient that adaptive optimizers would turn into steps of rounding noise)."""
    return [Conv2D(8, 3, padding="same", use_bias=False), BatchNorm(), Activation("relu"),
            MaxPool2D(2), Conv2D(16, 3, strides=2, padding="same", use_bias=False), BatchNorm(),
            Activation("relu"), Flatten(), Dense(spec.n_outputs)]


def _mlp_ln(spec: ModelSpec) -> list[Layer]:
    layers: list[Layer] = []
    for units in spec.hidden:
        layers += [Dense(units), LayerNorm(), *([Dropout(spec.dropout)] if spec.dropout else []),
                   Activation("relu")]
    return [*layers, Dense(spec.n_outputs)]


def _lstm(spec: ModelSpec) -> list[Layer]:
    *stacked, last = spec.hidden or (64,)
    return [*(LSTM(u, return_sequences=True) for u in stacked), LSTM(last),
            Dense(spec.n_outputs)]


def _gru(spec: ModelSpec) -> list[Layer]:
    *stacked, last = spec.hidden or (64,)
    return [*(GRU(u, return_sequences=True) for u in stacked), GRU(last),
            Dense(spec.n_outputs)]


def _embedding_gru(spec: ModelSpec) -> list[Layer]:
    *stacked, last = spec.hidden or (32,)
    return [Embedding(spec.vocab, 16), *(GRU(u, return_sequences=True) for u in stacked),
            GRU(last), Dense(spec.n_outputs)]


def _lenet(spec: ModelSpec) -> list[Layer]:
    return [Conv2D(6, 5, padding="same"), Activation("relu"), MaxPool2D(2),
            Conv2D(16, 5, padding="valid"), Activation("relu"), MaxPool2D(2), Flatten(),
            Dense(120), Activation("relu"), Dense(84), Activation("relu"),
            Dense(spec.n_outputs)]


def _nielsen(spec: ModelSpec) -> list[Layer]:
    hidden = spec.hidden or (30,)
    layers: list[Layer] = []
    for units in hidden:
        layers += [Dense(units, init="normal"), Activation("sigmoid")]
    return [*layers, Dense(spec.n_outputs, init="normal")]


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    Architecture("softmax", "classification", "cross_entropy", "softmax",
                 "softmax regression: one dense layer of C units, softmax, cross-entropy "
                 "(seeds 000, 003, 004)", _one_dense, default_lr=0.5),
    Architecture("svm", "classification", "hinge", "softmax",
                 "linear classifier with the multiclass hinge (SVM) loss (seed 003)",
                 _one_dense, default_lr=0.1),
    Architecture("linear", "regression", "mse", "identity",
                 "linear regression, Dense(1), MSE: the ice-cream demand model (seed 002)",
                 _one_dense, default_lr=0.1),
    Architecture("logistic", "binary", "binary_cross_entropy", "sigmoid",
                 "logistic regression: one unit, sigmoid, binary cross-entropy (seed 002)",
                 _one_dense, default_lr=0.5),
    Architecture("mlp", "classification", "cross_entropy", "softmax",
                 "MLP in->64->Dropout->ReLU->32->Dropout->ReLU->C (seed 004's PyTorch model)",
                 _mlp, default_lr=0.1, default_dropout=0.5, default_hidden=(64, 32)),
    Architecture("cnn", "classification", "cross_entropy", "softmax",
                 "small convnet: Conv 3x3 same 8, ReLU, MaxPool 2, Conv 3x3 stride 2 same 16, "
                 "ReLU, Flatten, Dense C (any image of at least 8x8)", _cnn, image=True,
                 default_lr=0.1),
    Architecture("cnn_bn", "classification", "cross_entropy", "softmax",
                 "the cnn with BatchNorm after each convolution: Conv 3x3 same 8 (no bias), "
                 "BatchNorm, ReLU, MaxPool 2, Conv 3x3 stride 2 same 16 (no bias), BatchNorm, "
                 "ReLU, Flatten, Dense C", _cnn_bn, image=True, default_lr=0.1),
    Architecture("mlp_ln", "classification", "cross_entropy", "softmax",
                 "MLP with LayerNorm: in->64->LayerNorm->ReLU->32->LayerNorm->ReLU->C",
                 _mlp_ln, default_lr=0.1, default_hidden=(64, 32)),
    Architecture("lstm", "classification", "cross_entropy", "softmax",
                 "LSTM(64) reading an image row by row (28x28: 28 steps of 28 features; "
                 "digits: 8 of 8), the last step's output, Dense C", _lstm, sequence="rows",
                 default_lr=1e-3, default_hidden=(64,)),
    Architecture("gru", "classification", "cross_entropy", "softmax",
                 "GRU(64) (reset_after=True) reading an image row by row, the last step's "
                 "output, Dense C", _gru, sequence="rows", default_lr=0.5,
                 default_hidden=(64,)),
    Architecture("embedding_gru", "classification", "cross_entropy", "softmax",
                 "Embedding(vocab, 16), GRU(32), Dense C on token sequences (the tokens "
                 "dataset)", _embedding_gru, sequence="tokens", default_lr=1e-2,
                 default_optimizer="adam", default_hidden=(32,)),
    Architecture("lenet", "classification", "cross_entropy", "softmax",
                 "LeNet-5: Conv 5x5 same 6, ReLU, MaxPool, Conv 5x5 valid 16, ReLU, MaxPool, "
                 "Flatten, Dense 120, Dense 84, Dense C (28x28 images)", _lenet, image=True,
                 default_lr=0.05),
    Architecture("nielsen", "classification", "quadratic", "sigmoid",
                 "seed 001's network: 784-30-10, sigmoid, quadratic cost, N(0, 1) init "
                 "(Nielsen's book: SGD eta 3.0, batch 10, 30 epochs)", _nielsen,
                 default_lr=3.0, default_hidden=(30,)),
]}
