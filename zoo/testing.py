"""pytest helpers for users' own ports (docs/own-models.md).

`assert_models_agree(models, data, **kwargs)` runs `zoo.compare_models` and raises
`AssertionError` whose message is the diagnosis: every framework's largest loss and weight
difference, the audit's findings that make the runs differ, initial weights that were
converted wrongly, and the first step and layer at which a model leaves the reference.

    def test_my_port():
        assert_models_agree({"keras": build_keras(), "torch": MyNet()}, "digits",
                            optimizer="adam", lr=1e-3, epochs=1)
"""

from __future__ import annotations

from typing import Any

__all__ = ["assert_models_agree"]


def assert_models_agree(models: dict[str, Any], data: Any, **kwargs: Any):
    """`zoo.compare_models(models, data, **kwargs)`; raises AssertionError (the diagnosis as
    its message) unless every model agrees with the reference at every step within the
    tolerance of the dtype and the audit found no setting that makes them differ. Returns
    the comparison."""
    from zoo.own import compare_models

    comp = compare_models(models, data, **kwargs)
    if not comp.agrees():
        raise AssertionError("the models do not agree:\n" + comp.message())
    return comp
