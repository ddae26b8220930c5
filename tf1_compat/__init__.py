"""The zoo's models as TF1-style graphs (`tf.compat.v1`: placeholders, variables,
`tf.compat.v1.train` optimizers, a `Session`), each in its own `tf.Graph`: every model is built
from its canonical layer list by `model.build`, one translation per layer kind in `layers`.

Eager execution is never disabled for the process: graphs are built inside
`with tf.Graph().as_default():`. Importing this package imports neither torch nor Keras models.
"""
