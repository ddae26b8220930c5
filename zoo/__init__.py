"""zoo: the shared, framework-free core of the model zoo.

Data, splits, the batch order, model and training specs, canonical initial weights,
float64 numpy references and the optimizer description live here. Nothing in this
package imports tensorflow, keras or torch at module level: each framework package
(`keras_models`, `tf1_compat`, `torch_models`) translates these into its own idiom.
"""

from zoo.errors import ZooError

__version__ = "0.1.0"
__all__ = ["ZooError", "__version__", "compare_models"]


def __getattr__(name: str):
    # `zoo.compare_models` (docs/own-models.md), imported on first use so that `import zoo`
    # stays light
    if name == "compare_models":
        from zoo.own import compare_models

        return compare_models
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
