# ruff: noqa: F401, B018, E402, I001  (the seed's code, kept as written)
# Seed 002's Keras Sequential code as written (3 inputs, Dense(1), mse, adam, 10 epochs), on
# the zoo's ice-cream data; then the same weights in the zoo's Keras, TF1 and torch linear
# models predict the same numbers as `model.predict`.
import numpy as np
import tensorflow as tf
from tensorflow import keras

from zoo import data

ds = data.load("icecream")
x, y = ds.X_train, ds.y_train.reshape(-1, 1)

# 모양 확인하기
x.shape, y.shape
assert x.shape[1] == 3

keras.utils.set_random_seed(0)  # not in the seed: its run is not reproducible without it
model = keras.models.Sequential()
model.add( keras.layers.Input(shape=(3,)) )
model.add( keras.layers.Dense(1) )

model.compile(loss="mse", optimizer="adam")

history = model.fit(x, y, epochs=10, verbose=0)
y_pred = model.predict(x, verbose=0)
losses = history.history["loss"]
assert losses[-1] < losses[0]  # Adam's default lr 1e-3 moves slowly: the loss only starts to fall

import keras_models.model
import tf1_compat.model
import torch
import torch_models.model
from zoo.specs import model_spec_for

kernel, bias = model.layers[0].get_weights()
weights = {"dense_0/kernel": kernel, "dense_0/bias": bias}
spec = model_spec_for("linear", 3, 1)
zoo_keras = keras_models.model.build(spec, weights)(x).numpy()
with torch.no_grad():
    zoo_torch = torch_models.model.build(spec, weights)(torch.from_numpy(x)).numpy()
graph = tf1_compat.model.build(spec, weights)
zoo_tf1 = graph.session.run(graph.logits, feed_dict={graph.x: x})
graph.close()
for got in (zoo_keras, zoo_torch, zoo_tf1):
    assert got.shape == y_pred.shape == (len(x), 1)
    assert np.abs(got - y_pred).max() <= 1e-6 * max(1.0, np.abs(y_pred).max())
