"""The zoo's models in TF2 Keras 3: every model built from its canonical layer list
(`keras_models.layers`: one Keras layer per canonical layer kind; `keras_models.model`: the one
registered model class, losses, outputs and the canonical-weights edge), trained with
`compile`, `fit`, `predict` (`keras_models.train`).

Importing this package imports neither torch nor the TF1 code; submodules import
tensorflow/keras when they are imported.
"""
