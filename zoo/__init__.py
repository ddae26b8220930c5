"""zoo: the shared, framework-free core of the model zoo.

Data, splits, the batch order, model and training specs, canonical initial weights,
float64 numpy references and the optimizer description live here. Nothing in this
package imports tensorflow, keras or torch at module level: each framework package
(`keras_models`, `tf1_compat`, `torch_models`) translates these into its own idiom.
"""

from zoo.errors import ZooError

__version__ = "0.1.0"
__all__ = ["ZooError", "__version__"]
