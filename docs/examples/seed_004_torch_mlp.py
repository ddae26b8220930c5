# ruff: noqa: UP008, E402, I001  (the seed's code, kept as written)
# Seed 004's PyTorch MLP and training step, as written (28x28 inputs, Adam lr 1e-4), run on
# one batch of random images; then the same weights in the zoo's torch, Keras and TF1 MLPs
# give the same logits (dropout off: torch `.eval()`, Keras's default call, TF1's default feed).
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim


class MLP(nn.Module):

    def __init__(self):
        super(MLP, self).__init__()

        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28 * 1, 64),
            nn.Dropout(p = 0.5),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.Dropout(p = 0.5),
            nn.ReLU(),
            nn.Linear(32, 10)
        )

    def forward(self, x):
        x = self.layers(x)
        return x


torch.manual_seed(0)
mlp = MLP()
inputs = torch.rand(16, 1, 28, 28)
targets = torch.randint(0, 10, (16,))

# define criterion & optimizer
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(mlp.parameters(), lr = 1e-4)

optimizer.zero_grad()
outputs = mlp(inputs)
loss = criterion(outputs, targets)
loss.backward()
optimizer.step()
assert outputs.shape == (16, 10) and 2.0 < loss.item() < 2.6  # about ln 10 = 2.30

# The trained weights in the canonical layout: kernel = Linear.weight.T
linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
weights = {}
for i, lin in enumerate(linears):
    weights[f"dense_{i}/kernel"] = lin.weight.detach().numpy().T.copy()
    weights[f"dense_{i}/bias"] = lin.bias.detach().numpy().copy()

import keras_models.model
import tf1_compat.model
import torch_models.model
from zoo.specs import model_spec_for

spec = model_spec_for("mlp", 784, 10)  # 784 -> 64 -> 32 -> 10, dropout 0.5
x = inputs.reshape(16, 784).numpy()
mlp.eval()
with torch.no_grad():
    seed_logits = mlp(inputs).numpy()
zoo_torch = torch_models.model.build(spec, weights).eval()
with torch.no_grad():
    torch_logits = zoo_torch(torch.from_numpy(x)).numpy()
keras_logits = keras_models.model.build(spec, weights)(x).numpy()
graph = tf1_compat.model.build(spec, weights)
tf1_logits = graph.session.run(graph.logits, feed_dict={graph.x: x})
graph.close()
assert np.abs(torch_logits - seed_logits).max() == 0.0
assert np.abs(keras_logits - seed_logits).max() < 1e-5
assert np.abs(tf1_logits - seed_logits).max() < 1e-5
