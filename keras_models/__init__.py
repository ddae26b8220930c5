"""The zoo's models in TF2 Keras 3 (`Sequential`, `compile`, `fit`, `predict`).

Importing this package imports neither torch nor the TF1 code; submodules import
tensorflow/keras when they are imported.
"""
