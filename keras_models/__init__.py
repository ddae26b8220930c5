"""The zoo's models in TF2 Keras 3: every model built from its canonical layer list
(`keras_models.layers`: one Keras layer per canonical layer kind; `keras_models.model`: the one
registered model class, losses, outputs and the canonical-weights edge), trained with
`compile`, `fit`, `predict` (`keras_models.train`).

Importing this package imports neither torch nor the TF1 code; submodules import
tensorflow/keras when they are imported.
"""

import os as _os
import sys as _sys

from zoo.errors import ConfigError as _ConfigError

if _os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes") \
        or "tf_keras" in _sys.modules:
    raise _ConfigError(
        "keras_models is the zoo's Keras 3 code, but this process runs Keras 2 (tf_keras, "
        "TF_USE_LEGACY_KERAS=1): mixing both Keras versions in one process is refused. Run "
        "them in separate processes (zoo compare does: each framework has its own), or unset "
        "TF_USE_LEGACY_KERAS before Python starts.")
