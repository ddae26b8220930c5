"""Compare your own models: a user's Keras model against their PyTorch (and TF1) port, step by
step (`compare_models`; `zoo.testing.assert_models_agree`; docs/own-models.md).

The zoo's own comparison (`zoo.compare`) trains models the zoo wrote. This one takes the
user's: a built `keras.Model`, an `nn.Module`, a TF1 function that builds the forward graph
from an input placeholder with `get_variable`. Each framework's adapter (`<package>/own.py`,
the protocol of `zoo.own_types`) reads its model layer by layer; this module, framework-free,

1. **matches** the weighted layers of every model to the reference's, in forward order, by
   kind and canonical shape (`match`), and maps every tensor through the zoo's weight tables
   (`zoo.layers`: transposes, the OIHW permutation, the row permutation of a Dense after a
   Flatten of NCHW features, the gate order of a GRU, torch's two LSTM biases). A parameter
   left unmatched on either side is an error listing what is left on each side;
2. **audits** every pair of layers and the losses and optimizers before anything trains
   (`audit`): activations, padding, strides, dropout rates, BatchNorm momentum and epsilon in
   each framework's own convention, GRU `reset_after`, a softmax applied twice, optimizer
   defaults, each with the translation that fixes it;
3. copies the reference's initial weights into the others (or, with `init="as_given"`,
   keeps each model's own and names the transformation a mis-converted tensor went through:
   a transpose, a missing flatten permutation, gates in another order, a reshape);
4. trains every model as its framework trains it, on the same batches, recording every
   step's loss and weights, and aligns them (`zoo.agreement`) into the zoo's `Comparison`
   (the same table, JSON, plots and summary as `zoo compare`);
5. where a framework leaves the reference, compares the models **layer by layer** at step 0
   and at the first divergent step, from the same weights and batch, and names the first
   layer whose output differs and by how much (`OwnDiagnosis`).

Models run in this process, one framework after another (the user's objects live here).
Every adapter trains a private copy: the user's models are never modified.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo import frameworks as registry
from zoo.compare import Comparison
from zoo.errors import ConfigError
from zoo.own_types import (
    Description,
    Found,
    OptimizerSettings,
    OwnHistory,
    OwnLoss,
    OwnOptimizer,
    TrainPlan,
    UnsupportedLayer,
)

__all__ = ["Finding", "OwnComparison", "OwnDiagnosis", "compare_models", "match"]

LOSSES = ("crossentropy", "binary_crossentropy", "mse")


def _cls(fw: str, kind: str) -> str:
    """A layer kind as `fw` calls it, for messages (the adapter's CLASS_NAMES)."""
    return getattr(adapter(fw), "CLASS_NAMES", {}).get(kind, kind)


def _views(fw: str) -> tuple[str, ...]:
    """The input views tried in order for image data (N, H, W, C): the framework's own image
    layout first, then flat features, rows as a sequence, and the other layout."""
    own = registry.get(fw).image_layout
    other = "nchw" if own == "nhwc" else "nhwc"
    return (own, "flat", "rows", other)


def _nchw(fw: str) -> bool:
    return registry.get(fw).image_layout == "nchw"


def adapter(fw: str):
    """The own-model adapter module of framework `fw` (`<package>/own.py`)."""
    return registry.get(fw, registry.names(own_models=True)).module("own")


# ----------------------------------------------------------------------------- data
@dataclass
class OwnData:
    name: str
    X_train: np.ndarray   # canonical: images NHWC, sequences (N, T, F), tokens (N, T), flat
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str             # classification, binary, regression
    n_classes: int | None
    split: str = ""
    label_names: tuple[str, ...] | None = None


def _data(data: Any, seed: int) -> OwnData:
    from zoo.data import Dataset, load, split_arrays

    if isinstance(data, str):
        data = load(data, seed=seed)
    if isinstance(data, Dataset):
        shape = data.image_shape

        def view(X):
            if getattr(data, "vocab", None):
                return np.asarray(X).astype(np.int64)   # token ids: integers, as users feed them
            return X.reshape(len(X), *shape) if shape is not None else X
        return OwnData(data.name, view(data.X_train), data.y_train, view(data.X_test),
                       data.y_test, data.task, data.n_classes, data.split,
                       getattr(data, "label_names", None))
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        arrays = [np.asarray(a) for a in data]
        if len(arrays) == 2:
            X, y = arrays
            if len(X) != len(y):
                raise ConfigError(f"data: X has {len(X)} samples but y has {len(y)}.")
            Xtr, Xte, ytr, yte = split_arrays(X, y, test_size=0.2, seed=seed,
                                              stratify=_is_labels(y))
            split = f"a seeded 80/20 split of the {len(X)} samples (seed {seed})"
        else:
            Xtr, ytr, Xte, yte = arrays
            split = "the train and test arrays given"
        y_all = np.concatenate([np.ravel(ytr), np.ravel(yte)])
        if _is_labels(y_all):
            k = int(y_all.max()) + 1
            task = "binary" if k == 2 and np.asarray(ytr).ndim == 2 else "classification"
            return OwnData("arrays", Xtr, ytr.reshape(-1).astype(np.int64), Xte,
                           yte.reshape(-1).astype(np.int64), task, k, split)
        return OwnData("arrays", Xtr, ytr.reshape(len(ytr), -1).astype(np.float64), Xte,
                       yte.reshape(len(yte), -1).astype(np.float64), "regression", None, split)
    raise ConfigError("data must be a zoo dataset name (e.g. 'digits'), a zoo Dataset, or "
                      "arrays (X, y) or (X_train, y_train, X_test, y_test).")


def _is_labels(y: np.ndarray) -> bool:
    y = np.asarray(y).ravel()
    if np.issubdtype(y.dtype, np.integer):
        return bool(len(y)) and y.min() >= 0
    return bool(len(y)) and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and \
        y.min() >= 0 and len(np.unique(y)) <= 100


def _view(X: np.ndarray, view: str) -> np.ndarray:
    if X.ndim != 4 or view == "nhwc":
        return X
    n, h, w, c = X.shape
    if view == "nchw":
        return np.ascontiguousarray(X.transpose(0, 3, 1, 2))
    if view == "flat":
        return X.reshape(n, h * w * c)
    if view == "rows":
        return X.reshape(n, h, w * c)
    raise ConfigError(f"unknown input layout {view!r}; use one of nhwc, nchw, flat, rows.")


# ----------------------------------------------------------------------------- matching
@dataclass
class Row:
    """One canonical tensor of the matched models and its native tensor(s) per framework."""

    spec: Any   # zoo.layers.TensorSpec with `native` = {framework: (user names, layout)}
    layer: str  # canonical layer name (dense_0, ...)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Matched:
    """The reference's weighted layers matched with each framework's, and the weight table."""

    reference: str
    #: framework -> list of (canonical layer name, reference Found, this framework's Found)
    pairs: dict[str, list[tuple[str, Found, Found]]]
    rows: list[Row]
    #: framework -> native names the comparison freezes (torch LSTM's bias_hh)
    frozen: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_canonical(self, fw: str, native: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {r.name: r.spec.from_native_arrays(fw, native) for r in self.rows}

    def to_native(self, fw: str, canonical: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for r in self.rows:
            out.update(r.spec.native_arrays(fw, np.asarray(canonical[r.name])))
        return out

    def table(self) -> list[dict[str, Any]]:
        """Canonical name -> native names and the layout per framework, for reports."""
        out = []
        for r in self.rows:
            d = {"canonical": r.name, "shape": list(r.spec.shape), "trainable": r.spec.trainable}
            for fw in self.pairs:
                d[fw] = list(r.spec.native_names(fw))
                lay = r.spec.layout(fw)
                d[f"{fw}_layout"] = getattr(lay, "what", "") or "as is"
            out.append(d)
        return out


def _canonical_shape(fw: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A per-sample shape in the canonical layout (torch images C, H, W -> H, W, C)."""
    if _nchw(fw) and len(shape) == 3:
        c, h, w = shape
        return (h, w, c)
    return tuple(shape)


def _zoo_layer(f: Found):
    from zoo import layers as L

    c = f.config
    if f.kind == "dense":
        return L.Dense(int(c["units"]))
    if f.kind == "conv2d":
        return L.Conv2D(int(c["filters"]), tuple(c["kernel_size"]), tuple(c["strides"]),
                        use_bias=bool(c.get("use_bias", True)))
    if f.kind == "batch_norm":
        m = c.get("momentum")
        return L.BatchNorm(0.99 if m is None or not 0 <= m < 1 else float(m),
                           float(c.get("epsilon", 1e-3)) or 1e-3)
    if f.kind == "layer_norm":
        return L.LayerNorm(float(c.get("epsilon", 1e-3)) or 1e-3)
    if f.kind == "embedding":
        return L.Embedding(int(c["vocab"]), int(c["dim"]))
    if f.kind == "lstm":
        return L.LSTM(int(c["units"]), bool(c.get("return_sequences", False)))
    if f.kind == "gru":
        return L.GRU(int(c["units"]), bool(c.get("return_sequences", False)),
                     bool(c.get("reset_after", True)))
    raise ConfigError(f"layer {f.name!r}: no weight table for kind {f.kind!r}.")


def _flattened_before(desc: Description, index: int, view: str | None) -> tuple[int, ...] | None:
    """For the weighted layer at `index` of `desc.layers`: the canonical (H, W, C) shape that
    was flattened into its input in C, H, W order (torch's NCHW flatten), else None."""
    f = desc.layers[index]
    if f.kind != "dense":
        return None
    prev_shape, from_input = desc.input_shape, True
    for g in reversed(desc.layers[:index]):
        if g.kind in ("flatten", "reshape", "dropout", "activation", "other", "permute") \
                and len(g.output_shape) <= 1:
            continue
        prev_shape, from_input = g.output_shape, False
        break
    if len(prev_shape) != 3 or int(np.prod(prev_shape)) != int(np.prod(f.input_shape)):
        return None
    if not _nchw(desc.framework):
        return None
    if from_input and view != "nchw":
        return None
    return _canonical_shape(desc.framework, tuple(prev_shape))


def _prev_image(desc: Description, index: int) -> tuple[int, ...] | None:
    f = desc.layers[index]
    for g in reversed(desc.layers[:index]):
        if len(g.output_shape) == 3:
            shape = _canonical_shape(desc.framework, tuple(g.output_shape))
            return shape if int(np.prod(shape)) == int(np.prod(f.input_shape)) else None
        if g.kind not in ("flatten", "reshape", "dropout", "activation", "other"):
            return None
    shape = tuple(desc.input_shape)
    if len(shape) == 3:
        shape = _canonical_shape(desc.framework, shape)
        return shape if int(np.prod(shape)) == int(np.prod(f.input_shape)) else None
    return None


def _describe_weighted(desc: Description) -> str:
    return ", ".join(f"{f.name} ({f.kind})" for f in desc.weighted()) or "none"


def match(descriptions: Mapping[str, Description], reference: str,
          native_names: Mapping[str, Sequence[str]],
          mapping: Mapping[str, Mapping[str, str]] | None = None,
          views: Mapping[str, str | None] | None = None) -> Matched:
    """Match every framework's weighted layers with the reference's and build the weight
    table (see the module docstring). `native_names`: every tensor each model holds
    (`get_weights`), so that nothing is left out silently. `mapping`: {framework: {reference
    layer name: that framework's layer name}} for models whose layers do not line up in
    order. Raises ConfigError listing what is left unmatched on each side."""
    from zoo.layers import TensorSpec  # noqa: F401  (the rows are TensorSpecs)

    views = views or {}
    ref = descriptions[reference]
    ref_w = [i for i, f in enumerate(ref.layers) if f.weighted]
    counts: dict[str, int] = {}
    canon_names = []
    for i in ref_w:
        kind = ref.layers[i].kind
        canon_names.append(f"{kind}_{counts.get(kind, 0)}")
        counts[kind] = counts.get(kind, 0) + 1
    pairs: dict[str, list[tuple[str, Found, Found]]] = {}
    index_of: dict[str, list[int]] = {}
    for fw, desc in descriptions.items():
        fw_w = [i for i, f in enumerate(desc.layers) if f.weighted]
        if mapping and fw in mapping and fw != reference:
            by_name = {desc.layers[i].name: i for i in fw_w}
            chosen = []
            for i in ref_w:
                target = mapping[fw].get(ref.layers[i].name)
                if target is None or target not in by_name:
                    raise ConfigError(f"mapping[{fw!r}] has no {fw} layer for the reference's "
                                      f"{ref.layers[i].name!r} (or names an unknown one: "
                                      f"{target!r}); {fw}'s weighted layers are "
                                      f"{', '.join(by_name)}.")
                chosen.append(by_name[target])
            fw_w = chosen
        problems = []
        for k, (i, j) in enumerate(itertools.zip_longest(ref_w, fw_w)):
            if i is None or j is None or ref.layers[i].kind != desc.layers[j].kind:
                left_ref = [f"{ref.layers[a].name} ({ref.layers[a].kind})" for a in ref_w[k:]]
                left_fw = [f"{desc.layers[b].name} ({desc.layers[b].kind})" for b in fw_w[k:]]
                problems.append(
                    f"unmatched layers from position {k}: {reference} has "
                    f"{', '.join(left_ref) or 'nothing'}; {fw} has "
                    f"{', '.join(left_fw) or 'nothing'}")
                break
        if problems:
            raise ConfigError(f"the weighted layers of {fw} do not match {reference}'s in "
                              f"order ({problems[0]}). {reference}: {_describe_weighted(ref)}; "
                              f"{fw}: {_describe_weighted(desc)}. Pass mapping={{'{fw}': "
                              "{reference layer: " + fw + " layer}} to pair them by name.")
        pairs[fw] = [(canon_names[k], ref.layers[i], desc.layers[j])
                     for k, (i, j) in enumerate(zip(ref_w, fw_w, strict=True))]
        index_of[fw] = fw_w
    rows: list[Row] = []
    frozen: dict[str, list[str]] = {fw: [] for fw in descriptions}
    notes: list[str] = []
    covered: dict[str, set[str]] = {fw: set() for fw in descriptions}
    for k, i in enumerate(ref_w):
        name = canon_names[k]
        rf = ref.layers[i]
        ref_in = _canonical_shape(reference, tuple(rf.input_shape))
        layer = _zoo_layer(rf)
        base = layer.tensors(name, ref_in, None)
        per_fw: dict[str, dict[str, tuple[Any, Any]]] = {}
        shapes_ok = {}
        for fw, desc in descriptions.items():
            j = index_of[fw][k]
            f = desc.layers[j]
            fw_in = _canonical_shape(fw, tuple(f.input_shape))
            after = _flattened_before(desc, j, views.get(fw))
            try:
                fw_rows = _zoo_layer(f).tensors(name, fw_in, after)
            except ConfigError as exc:
                raise ConfigError(f"{fw} layer {f.name!r}: {exc}") from None
            shapes_ok[fw] = {t.name: t.shape for t in fw_rows}
            col = registry.get(fw).weight_format or fw
            per_fw[fw] = {}
            for t in fw_rows:
                zoo_natives = t.native_names(col)
                roles = [_role(n, name) for n in zoo_natives]
                per_fw[fw][t.name] = (roles, t.layout(col), f)
        for t in base:
            present = {}
            for fw in descriptions:
                entry = per_fw[fw].get(t.name)
                present[fw] = entry is not None and all(r in entry[2].tensors for r in entry[0])
            if not any(present.values()):
                continue   # no framework has it (a layer without bias, BatchNorm without scale)
            if not all(present.values()):
                have = [fw for fw, p in present.items() if p]
                lack = [fw for fw, p in present.items() if not p]
                raise ConfigError(
                    f"{t.name}: {', '.join(have)} {'has' if len(have) == 1 else 'have'} it "
                    f"({', '.join(_natives(per_fw[fw][t.name]) for fw in have)}) but "
                    f"{', '.join(lack)} "
                    f"{'does' if len(lack) == 1 else 'do'} not (layer "
                    f"{', '.join(descriptions[fw].layers[index_of[fw][k]].name for fw in lack)}"
                    "): turn the bias (or scale/center) on or off alike on both sides.")
            native = {}
            for fw in descriptions:
                roles, layout, f = per_fw[fw][t.name]
                if shapes_ok[fw].get(t.name) != t.shape:
                    raise ConfigError(
                        f"{t.name}: {reference}'s {rf.name!r} holds it as {t.shape} but "
                        f"{fw}'s {f.name!r} as {shapes_ok[fw].get(t.name)} (canonical "
                        "shapes); the layers differ in size.")
                names = tuple(f.tensors[r] for r in roles)
                covered[fw].update(names)
                native[fw] = (names[0] if len(names) == 1 else names, layout)
                if len(names) == 2 and getattr(layout, "bias", None) == "sum":
                    frozen[fw].append(names[1])
            rows.append(Row(dataclasses.replace(t, native=native), name))
    for fw, names in native_names.items():
        left = [n for n in names if n not in covered[fw]]
        if left:
            raise ConfigError(f"{fw} model: parameter{'s' if len(left) > 1 else ''} "
                              f"{', '.join(left)} matched to nothing in {reference}'s model "
                              f"(matched layers: {_describe_weighted(descriptions[fw])}); "
                              "a tensor outside the layers the zoo maps cannot be compared: "
                              "remove it or pass mapping=....")
    for fw, names in frozen.items():
        if names:
            notes.append(f"{fw}: its LSTM has two biases (bias_ih + bias_hh) where the "
                         "reference has one; trained, their sum moves twice as fast under SGD. "
                         f"The comparison freezes {', '.join(names)} (at zero when the "
                         "reference's weights are copied); do the same in your own training "
                         "(`requires_grad_(False)`) to match Keras.")
    return Matched(reference, pairs, rows, {fw: tuple(v) for fw, v in frozen.items() if v},
                   notes)


def _role(native: str, layer: str) -> str:
    for sep in ("/", "."):
        if native.startswith(layer + sep):
            return native[len(layer) + 1:]
    return native


def _natives(entry) -> str:
    roles, _, f = entry
    return ", ".join(f.tensors.get(r, r) for r in roles)


# ----------------------------------------------------------------------------- audit
@dataclass
class Finding:
    """One setting in which a framework's model differs from the reference's."""

    framework: str
    layer: str | None     # canonical layer name (dense_0, ...), None for loss and optimizer
    native_layer: str | None
    setting: str
    reference_value: Any
    value: Any
    message: str
    #: "differs": the runs will differ; "handled": the comparison compensates (said how);
    #: "note": no effect on the comparison
    severity: str = "differs"

    def to_json(self) -> dict[str, Any]:
        return {k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                for k, v in dataclasses.asdict(self).items()}


def _stage(desc: Description, found: Found) -> list[Found]:
    """The layers after a weighted layer, up to the next weighted one."""
    i = desc.layers.index(found)
    out = []
    for g in desc.layers[i + 1:]:
        if g.weighted:
            break
        out.append(g)
    return out


def _tokens(found: Found, stage: list[Found], last: bool) -> list[tuple[str, Any, Found]]:
    """What a stage computes after its weighted layer, in canonical terms, skipping layout
    moves: activations, pools and dropout."""
    toks = []
    act = found.config.get("activation")
    if act and act != "linear" and found.kind in ("dense", "conv2d"):
        toks.append(("activation", act, found))
    for g in stage:
        if g.kind == "activation" and g.config.get("function") not in ("linear", "identity",
                                                                       "Identity"):
            toks.append(("activation", g.config.get("function"), g))
        elif g.kind in ("max_pool2d", "avg_pool2d"):
            c = g.config
            toks.append((g.kind, (tuple(c.get("pool_size", ())), tuple(c.get("strides", ())),
                                  c.get("padding")), g))
        elif g.kind == "dropout":
            toks.append(("dropout", float(g.config.get("rate", 0.0)), g))
        elif g.kind == "other":
            toks.append(("other", g.config.get("class"), g))
    if last:   # a final softmax / log-softmax is the loss's business (audited there)
        while toks and toks[-1][0] == "activation" and toks[-1][1] in ("softmax", "log_softmax",
                                                                       "sigmoid"):
            toks.pop()
    return toks


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def audit(descriptions: Mapping[str, Description], matched: Matched, losses: Mapping[str, OwnLoss],
          optimizers: Mapping[str, OptimizerSettings] | None = None) -> list[Finding]:
    """Every setting in which each framework's model, loss or optimizer differs from the
    reference's, with the translation that fixes it (see `Finding`)."""
    ref = matched.reference
    rdesc = descriptions[ref]
    out: list[Finding] = []
    for fw, pairs in matched.pairs.items():
        if fw == ref:
            continue
        desc = descriptions[fw]
        for k, (name, a, b) in enumerate(pairs):
            out += _audit_layer(ref, fw, name, a, b)
            last = k == len(pairs) - 1
            ta = _tokens(a, _stage(rdesc, a), last)
            tb = _tokens(b, _stage(desc, b), last)
            out += _audit_stage(ref, fw, name, a, b, ta, tb)
        out += _audit_loss(ref, fw, rdesc, desc, losses)
    for fw, desc in descriptions.items():
        out += _audit_output(fw, desc, losses[fw])
    if optimizers:
        for fw, s in optimizers.items():
            if fw != ref:
                out += _audit_optimizer(ref, fw, optimizers[ref], s)
    return out


def _audit_layer(ref: str, fw: str, name: str, a: Found, b: Found) -> list[Finding]:
    ca, cb = a.config, b.config
    na, nb = ca.get("native", {}), cb.get("native", {})
    where = f"{name} ({ref} {a.name!r}, {fw} {b.name!r})"
    out: list[Finding] = []

    def add(setting, va, vb, msg, severity="differs"):
        out.append(Finding(fw, name, b.name, setting, va, vb, msg, severity))

    if a.kind == "conv2d":
        for key in ("strides", "dilation", "groups"):
            if key in ca and key in cb and tuple(np.atleast_1d(ca[key])) != \
                    tuple(np.atleast_1d(cb[key])):
                add(key, ca[key], cb[key], f"{where}: Conv2D {key} {_fmt(ca[key])} against "
                    f"{_fmt(cb[key])}; use the same {key}.")
        pa, pb = _padding(ca, a.input_shape, ref), _padding(cb, b.input_shape, fw)
        if pa is not None and pb is not None and pa != pb:
            fix = ("pad the bottom and right by one more with nn.ZeroPad2d((0, 1, 0, 1)) "
                   "before a padding=0 conv (torch pads symmetrically; Keras's 'same' puts the "
                   "extra row and column at the bottom and right)") \
                if isinstance(cb.get("padding"), (list, tuple)) else \
                "use the same padding"
            add("padding", ca.get("padding"), cb.get("padding"),
                f"{where}: padding {_fmt(ca.get('padding'))} ({pa} rows/columns top, bottom, "
                f"left, right) against {_fmt(cb.get('padding'))} ({pb}); {fix}.")
    if a.kind == "batch_norm":
        ma, mb = ca.get("momentum"), cb.get("momentum")
        if mb is None and ca.get("momentum") is not None and "momentum" in nb:
            add("momentum", ma, None, f"{where}: {_cls(fw, 'batch_norm')} momentum=None (a "
                "cumulative average) has no Keras equivalent; use momentum="
                f"{1 - (ma or 0.99):g}.")
        elif ma is not None and mb is not None and not math.isclose(ma, mb, abs_tol=1e-9):
            nat_a, nat_b = na.get("momentum", ma), nb.get("momentum", mb)
            if _inverted(cb):
                fix = f"{fw}'s momentum is 1 - Keras's, use {1 - ma:g}"
            elif _inverted(ca):
                fix = f"Keras's momentum is 1 - {ref}'s, use {ma:g}"
            else:
                fix = f"use {ma:g}"
            add("momentum", nat_a, nat_b, f"{_cls(ref, 'batch_norm')} momentum {_fmt(nat_a)} "
                f"against {_cls(fw, 'batch_norm')} momentum {_fmt(nat_b)} in {where}: {fix}.")
        ea, eb = ca.get("epsilon"), cb.get("epsilon")
        if ea is not None and eb is not None and not math.isclose(ea, eb, rel_tol=1e-6):
            add("epsilon", ea, eb, f"{where}: BatchNorm epsilon {_fmt(ea)} against {_fmt(eb)} "
                f"(Keras's default is 1e-3, torch's 1e-5); pass {_fmt(ea)} on the {fw} side.")
        va, vb = ca.get("moving_variance"), cb.get("moving_variance")
        if va and vb and va != vb:
            add("moving_variance", va, vb, f"{where}: the moving variance is updated with the "
                f"{va} batch variance in {ref} and the {vb} one in {fw} (Bessel's factor "
                "m/(m-1)); only the moving variance (inference) differs, not training. "
                + (f"The comparison corrects {fw}'s moving variance to the biased convention."
                   if _corrects(fw) and va == "biased" else
                   "Compared as it is: expect the moving variance to differ."),
                "handled" if _corrects(fw) and va == "biased" else "differs")
    if a.kind == "layer_norm":
        ea, eb = ca.get("epsilon"), cb.get("epsilon")
        if ea is not None and eb is not None and not math.isclose(ea, eb, rel_tol=1e-6):
            add("epsilon", ea, eb, f"{where}: LayerNorm epsilon {_fmt(ea)} against {_fmt(eb)} "
                f"(Keras's default is 1e-3, torch's 1e-5); pass {_fmt(ea)} on the {fw} side.")
    if a.kind in ("lstm", "gru"):
        for key in ("return_sequences", "activation", "recurrent_activation", "reset_after"):
            if key in ca and key in cb and ca[key] != cb[key]:
                extra = (" (torch's GRU is the reset_after=True GRU; Keras 2's default was "
                         "False: use reset_after=True in Keras)") if key == "reset_after" else ""
                add(key, ca[key], cb[key], f"{where}: {a.kind.upper()} {key} {ca[key]} "
                    f"against {cb[key]}{extra}.")
        if cb.get("batch_first") is False:
            add("batch_first", True, False, f"{where}: nn.{a.kind.upper()}(batch_first=False) "
                "reads (T, N, F) but the data is (N, T, F); pass batch_first=True.")
        for key, want in (("num_layers", 1), ("bidirectional", False)):
            if key in cb and cb[key] != want:
                add(key, want, cb[key], f"{where}: nn.{a.kind.upper()}({key}={cb[key]}) is not "
                    f"supported; use {key}={want}.")
    if a.kind == "conv2d" or a.kind == "dense":
        ua, ub = ca.get("use_bias", True), cb.get("use_bias", True)
        if ua != ub:
            add("use_bias", ua, ub, f"{where}: bias {'on' if ua else 'off'} in {ref}, "
                f"{'on' if ub else 'off'} in {fw}.")
    return out


def _inverted(c: dict) -> bool:
    """A BatchNorm whose native momentum is the weight of the NEW value (torch's)."""
    nat = c.get("native", {}).get("momentum")
    return nat is not None and c.get("momentum") is not None and \
        not math.isclose(float(nat), float(c["momentum"]), abs_tol=1e-12)


def _corrects(fw: str) -> bool:
    """The adapter can keep a BatchNorm's moving variance in the biased convention
    (`TrainPlan.moving_variance`)."""
    return bool(getattr(adapter(fw), "CORRECTS_MOVING_VARIANCE", False))


def _padding(c: dict, in_shape, fw: str):
    """((top, bottom), (left, right)) of a conv's padding, for comparison."""
    from zoo.layers import same_padding

    p = c.get("padding")
    if p is None:
        return None
    if p == "valid":
        return ((0, 0), (0, 0))
    if p == "same":
        shape = _canonical_shape(fw, tuple(in_shape))
        if len(shape) != 3:
            return None
        (kh, kw), (sh, sw) = tuple(c["kernel_size"]), tuple(c["strides"])
        return (same_padding(shape[0], kh, sh), same_padding(shape[1], kw, sw))
    p = [list(np.atleast_1d(x)) for x in p]
    return tuple((int(q[0]), int(q[-1])) for q in p)


def _audit_stage(ref, fw, name, a, b, ta, tb) -> list[Finding]:
    out = []
    where = f"after {name} ({ref} {a.name!r}, {fw} {b.name!r})"
    for x, y in itertools.zip_longest(ta, tb):
        if x is not None and y is not None and x[0] == y[0] and x[1] == y[1]:
            continue
        if x is not None and y is not None and x[0] == y[0] == "dropout":
            out.append(Finding(fw, name, y[2].name, "dropout rate", x[1], y[1],
                               f"{where}: dropout rate {x[1]:g} in {ref} against {y[1]:g} in "
                               f"{fw} ({y[2].name!r}); use rate {x[1]:g} (torch's p and "
                               "Keras's rate are both the fraction dropped)."))
        else:
            sa = " then ".join(f"{t[0]} {_fmt(t[1])}" for t in ta) or "nothing"
            sb = " then ".join(f"{t[0]} {_fmt(t[1])}" for t in tb) or "nothing"
            out.append(Finding(fw, name, b.name, "layers after", sa, sb,
                               f"{where}: {ref} applies {sa}, {fw} applies {sb}; make them "
                               "the same (a missing or extra activation, pool or dropout)."))
        break
    return out


def _loss_input(fw: str, loss: OwnLoss, output: str) -> tuple[str, str]:
    """(what the loss wants, its name) for a framework's loss on its model's output."""
    native = loss.native
    if loss.kind != "crossentropy":
        return "any", loss.kind
    if native is None:
        if fw == "keras":
            return ("probabilities" if output == "probabilities" else "logits",
                    "sparse_categorical_crossentropy" + ("" if output == "probabilities" else
                                                         " (from_logits=True)"))
        if fw == "torch":
            return "logits", "nn.CrossEntropyLoss"
        return "logits", "sparse_softmax_cross_entropy"
    cls = type(native).__name__
    if cls in ("CrossEntropyLoss",):
        return "logits", "nn.CrossEntropyLoss"
    if cls == "NLLLoss":
        return "log_probabilities", "nn.NLLLoss"
    from_logits = getattr(native, "from_logits", None)
    if from_logits is None and hasattr(native, "get_config"):
        from_logits = native.get_config().get("from_logits")
    if isinstance(native, str):
        return ("probabilities", native)
    if from_logits is not None:
        return ("logits" if from_logits else "probabilities",
                f"{cls}(from_logits={from_logits})")
    return "any", cls


def _audit_output(fw: str, desc: Description, loss: OwnLoss) -> list[Finding]:
    wants, name = _loss_input(fw, loss, desc.output)
    got = desc.output
    if wants == "any" or got == wants or (wants == "logits" and got == "log_probabilities"):
        return []
    if wants == "logits" and got == "probabilities":
        msg = (f"{fw}: softmax applied twice: the model ends in a softmax and {name} applies "
               "(log-)softmax again; remove the model's final softmax (the loss wants logits)"
               + (" or, in Keras, use from_logits=False" if fw == "keras" else "") + ".")
    elif wants == "probabilities" and got == "logits":
        msg = (f"{fw}: {name} reads probabilities but the model outputs logits (no final "
               "softmax): add the softmax or use from_logits=True.")
    elif wants == "log_probabilities":
        msg = (f"{fw}: {name} wants log-probabilities but the model outputs {got}: end the "
               "model in LogSoftmax, or use nn.CrossEntropyLoss on logits.")
    else:
        msg = f"{fw}: {name} wants {wants} but the model outputs {got}."
    return [Finding(fw, None, None, "loss", wants, got, msg)]


def _audit_loss(ref, fw, rdesc, desc, losses) -> list[Finding]:
    la, lb = losses[ref], losses[fw]
    if la.kind != lb.kind:
        return [Finding(fw, None, None, "loss", la.kind, lb.kind,
                        f"{fw} trains with {lb.kind}, {ref} with {la.kind}.")]
    if la.kind != "crossentropy":
        return []
    wa, na = _loss_input(ref, la, rdesc.output)
    wb, nb = _loss_input(fw, lb, desc.output)
    how = {"probabilities": "on the softmax probabilities", "logits": "on the logits",
           "log_probabilities": "on the log-probabilities"}
    if (wa, rdesc.output) != (wb, desc.output):
        keras_note = (" (Keras takes the logits from the softmax op, so this is log-softmax "
                      "cross-entropy)") if "probabilities" == wa and ref == "keras" else ""
        return [Finding(fw, None, None, "loss relation", f"{na} {how.get(wa, '')}",
                        f"{nb} {how.get(wb, '')}",
                        f"loss: {ref} computes {na} {how.get(wa, '')}{keras_note}; {fw} "
                        f"computes {nb} {how.get(wb, '')}: the same cross-entropy of the "
                        "same logits, so the losses are compared directly.", "note")]
    return []


def _audit_optimizer(ref: str, fw: str, a: OptimizerSettings, b: OptimizerSettings
                     ) -> list[Finding]:
    out = []

    def add(setting, va, vb, fix):
        out.append(Finding(fw, None, None, f"optimizer {setting}", va, vb,
                           f"optimizer: {a.name} {setting} {_fmt(va)} ({ref}) against "
                           f"{b.name} {setting} {_fmt(vb)} ({fw}); {fix}."))

    if a.name != b.name:
        add("class", a.name, b.name, "use the same optimizer")
        return out
    if not math.isclose(a.lr, b.lr, rel_tol=1e-6):
        add("learning rate", a.lr, b.lr, f"use lr {a.lr:g}")
    if not math.isclose(a.momentum, b.momentum, abs_tol=1e-9):
        add("momentum", a.momentum, b.momentum, f"use momentum {a.momentum:g}")
    if a.nesterov != b.nesterov:
        add("nesterov", a.nesterov, b.nesterov, f"use nesterov={a.nesterov}")
    if a.rho is not None and b.rho is not None and not math.isclose(a.rho, b.rho):
        add("rho", a.rho, b.rho, f"torch calls it alpha (default 0.99; Keras's rho 0.9): use "
            f"{a.rho:g}")
    for key in ("beta_1", "beta_2"):
        va, vb = getattr(a, key), getattr(b, key)
        if va is not None and vb is not None and not math.isclose(va, vb, rel_tol=1e-7):
            add(key, va, vb, f"use {va:g}")
    if a.epsilon is not None and b.epsilon is not None:
        if not math.isclose(a.epsilon, b.epsilon, rel_tol=1e-6) or \
                a.epsilon_placement != b.epsilon_placement:
            add("epsilon", f"{a.epsilon:g} {a.epsilon_placement or ''}".strip(),
                f"{b.epsilon:g} {b.epsilon_placement or ''}".strip(),
                "the defaults differ (Keras 1e-7, torch 1e-8) and so does where epsilon is "
                "added (inside the square root, outside it, or to the bias-corrected root): no "
                "one value makes them equal; pass a negligible epsilon (1e-20) to both")
    if a.initial_accumulator is not None and b.initial_accumulator is not None and \
            not math.isclose(a.initial_accumulator, b.initial_accumulator):
        add("initial accumulator", a.initial_accumulator, b.initial_accumulator,
            f"torch's Adagrad starts at 0 (initial_accumulator_value), Keras's at 0.1: use "
            f"{a.initial_accumulator:g}")
    if not math.isclose(a.weight_decay, b.weight_decay):
        add("weight decay", a.weight_decay, b.weight_decay,
            "torch's weight_decay is an L2 gradient term, Keras's is decoupled decay: use the "
            "same (or none)")
    if a.centered != b.centered:
        add("centered", a.centered, b.centered, f"use centered={a.centered}")
    return out


# ----------------------------------------------------------------------------- initial weights
def explain_mismatch(row: Row, fw: str, ref_canonical: np.ndarray,
                     native: Mapping[str, np.ndarray]) -> str | None:
    """How `fw`'s native tensor(s) of `row` came from the reference's canonical array when
    they do not equal the correct conversion: the first of a transpose left out, a reshape in
    place of a transpose or permutation, a missing flatten permutation, gates in another
    order, a kernel flipped. None if no known mistake explains it."""
    spec = row.spec
    names = spec.native_names(fw)
    got = [np.asarray(native[n]) for n in names]
    lay = spec.layout(fw)
    a = np.asarray(ref_canonical)

    def same(cands) -> bool:
        cands = cands if isinstance(cands, tuple) else (cands,)
        return len(cands) == len(got) and all(
            c.shape == g.shape and np.allclose(c, g, rtol=1e-6, atol=1e-7)
            for c, g in zip(cands, got, strict=True))

    correct = lay.to_native(a)
    if same(correct):
        return None
    target = got[0].shape
    if len(got) == 1 and a.size == got[0].size:
        if a.shape == target and a.ndim == 2 and same(a):
            return (f"{names[0]} is the reference's {spec.name} as it is, not transposed "
                    f"({lay.what or 'the layout'}): the transposed kernel")
        if same(np.ascontiguousarray(a).reshape(target)) and a.ndim >= 2:
            return (f"{names[0]} is the reference's {spec.name} reshaped to {target}, not "
                    f"{lay.what or 'permuted'}")
        if a.ndim == 2 and getattr(lay, "split", None) is not None and same(a.T.copy()):
            h, w, c = lay.split[:3]
            return (f"{names[0]} is the reference's {spec.name} transposed but with its rows "
                    f"still in H, W, C order: the flatten permutation (H, W, C -> C, H, W of "
                    f"the {h}x{w}x{c} features before this layer) is missing")
        if a.ndim == 4 and same(lay.to_native(a[::-1, ::-1])):
            return (f"{names[0]} is the reference's {spec.name} flipped in both spatial axes "
                    "(convolution against cross-correlation)")
        if a.ndim == 4:
            for perm in itertools.permutations(range(4)):
                cand = np.transpose(a, perm)
                if cand.shape == target and same(np.ascontiguousarray(cand)):
                    return (f"{names[0]} is the reference's {spec.name} permuted {perm}, "
                            f"not {lay.what or 'as the layout says'}")
    order = getattr(lay, "order", None)
    if order is not None:
        g = len(order)
        for perm in itertools.permutations(range(g)):
            if tuple(perm) == tuple(order):
                continue
            cand = dataclasses.replace(lay, order=tuple(perm))
            if same(cand.to_native(a)):
                gates = "i, f, c, o" if g == 4 else "z, r, h"
                got_order = ", ".join(gates.split(", ")[p] for p in perm)
                want = ", ".join(gates.split(", ")[p] for p in order)
                return (f"{', '.join(names)}: the gate blocks are the reference's in order "
                        f"({got_order}) where {fw} needs ({want}): gates copied in the wrong "
                        "order")
    return None


# ----------------------------------------------------------------------------- diagnosis
@dataclass
class LayerCheck:
    """The layer-by-layer forward comparison at one step, from the same weights and batch."""

    step: int
    #: canonical layer -> max |difference| of the output of its stage
    differences: dict[str, float]
    first_layer: str | None
    first_native: str | None
    difference: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class OwnDiagnosis:
    framework: str
    reference: str
    step: int | None
    cause: str
    layer: str | None = None
    difference: float = 0.0
    init: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    layer_checks: list[LayerCheck] = field(default_factory=list)

    def summary(self) -> str:
        head = (f"{self.framework}: agrees with {self.reference} within tolerance at every step"
                if self.step is None else
                f"{self.framework} vs {self.reference}: first divergence at step {self.step}")
        where = f"; first differing layer {self.layer} (max |diff| {self.difference:.3g})" \
            if self.layer else ""
        return f"{head}{where}. Likely cause: {self.cause.rstrip('.')}."

    def to_json(self) -> dict[str, Any]:
        return {"framework": self.framework, "reference": self.reference, "step": self.step,
                "cause": self.cause, "layer": self.layer, "difference": self.difference,
                "init": self.init, "findings": self.findings,
                "layer_checks": [c.to_json() for c in self.layer_checks]}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _to_ref_layout(fw: str, a: np.ndarray, ref_shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if _nchw(fw) and a.ndim == 4:
        a = a.transpose(0, 2, 3, 1)
    if a.shape[1:] != tuple(ref_shape) and int(np.prod(a.shape[1:])) == int(np.prod(ref_shape)):
        a = a.reshape(len(a), *ref_shape)
    return a


# ----------------------------------------------------------------------------- the comparison


@dataclass
class OwnModelInfo:
    """What the report says about the compared models (`Comparison.model`)."""

    name: str
    layers: dict[str, list[dict[str, Any]]]
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layers": self.layers}


@dataclass
class OwnComparison(Comparison):
    findings: list[Finding] = field(default_factory=list)
    weight_table: list[dict[str, Any]] = field(default_factory=list)
    label_names: tuple[str, ...] | None = None

    def to_json(self, curves: bool = True) -> dict[str, Any]:
        out = super().to_json(curves)
        out["findings"] = [f.to_json() for f in self.findings]
        out["weight_table"] = self.weight_table
        if self.label_names:
            out["label_names"] = list(self.label_names)
        return out

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "differs"]

    def agrees(self) -> bool:
        return all(r.first_divergent_step is None for r in self.results.values()) and \
            not self.differences and not any(getattr(d, "init", None)
                                             for d in self.diagnoses.values())

    def message(self) -> str:
        """Everything that differs, one line each: the text of `assert_models_agree`."""
        lines = []
        for fw, r in self.results.items():
            if fw == self.reference:
                continue
            lines.append(f"{fw}: max loss diff {r.max_loss_diff:.3g}, max weight diff "
                         f"{r.max_weight_diff:.3g}, first divergent step "
                         f"{r.first_divergent_step if r.first_divergent_step is not None else 'none'}")
        lines += [f"audit: {f.message}" for f in self.differences]
        for d in self.diagnoses.values():
            lines += [f"initial weights: {t}" for t in d.init]
            lines.append(f"diagnosis: {d.summary()}")
        return "\n".join(lines)


def _loss_spec(loss: Any, fw: str, task: str) -> OwnLoss:
    if isinstance(loss, Mapping):
        if fw not in loss:
            raise ConfigError(f"loss: no entry for {fw}; give one loss per model, or a zoo "
                              f"loss name ({', '.join(LOSSES)}) for all.")
        value = loss[fw]
        if isinstance(value, OwnLoss):
            return value
        if isinstance(value, str) and value in LOSSES:
            return OwnLoss(value)
        kind = {"classification": "crossentropy", "binary": "binary_crossentropy",
                "regression": "mse"}[task]
        return OwnLoss(kind, value)
    if loss is None:
        loss = {"classification": "crossentropy", "binary": "binary_crossentropy",
                "regression": "mse"}[task]
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}, or a mapping "
                          "{framework: that framework's own loss object}.")
    return OwnLoss(loss)


def _optimizer(optimizer: Any, lr: float | None, fw: str, dtype: str):
    from zoo.optimizers import OPTIMIZERS, OptimizerSpec

    if isinstance(optimizer, Mapping):
        if fw not in optimizer:
            raise ConfigError(f"optimizer: no entry for {fw}; give one optimizer per model, or "
                              f"a zoo optimizer name ({', '.join(OPTIMIZERS)}) for all.")
        native = optimizer[fw]
        settings = adapter(fw).audit_optimizer(native)
        return OwnOptimizer(native=native), settings
    if isinstance(optimizer, OptimizerSpec):
        spec = optimizer if lr is None else optimizer.with_lr(lr)
    else:
        spec = OptimizerSpec(str(optimizer), lr=0.01 if lr is None else lr)
    return OwnOptimizer(spec=spec), None


def compare_models(models: Mapping[str, Any], data: Any, *, loss: Any = None,
                   optimizer: Any = "sgd", lr: float | None = None, epochs: int = 1,
                   batch_size: int = 32, dtype: str = "float32", seed: int = 0,
                   reference: str | None = None, init: str = "reference",
                   mapping: Mapping[str, Mapping[str, str]] | None = None,
                   dropout: str = "off", layouts: Mapping[str, str] | None = None,
                   record_every: int | None = None, diagnose: bool = True,
                   progress: Callable[[str, int, int, float], None] | None = None,
                   ) -> OwnComparison:
    """Train the user's own models (a mapping framework -> model: "keras" a built
    `keras.Model`, "torch" an `nn.Module`, "tf1" a function building the forward graph from
    an input placeholder) on the same data, initial weights, batch order and optimizer, and
    compare them step by step against `reference` (default: the first). See the module
    docstring and docs/own-models.md.

    data: a zoo dataset name, a `zoo.data.Dataset`, or arrays (X, y) (split 80/20 by `seed`)
    or (X_train, y_train, X_test, y_test); images NHWC (each framework gets them in the
    layout its model takes: torch NCHW unless its model reads another, or `layouts`).
    loss: a zoo loss name for all ("crossentropy", "binary_crossentropy", "mse"; default by
    the task), each framework using its idiomatic loss on its model's output, or a mapping
    {framework: that framework's own loss object}.
    optimizer: a zoo optimizer name or `OptimizerSpec` (translated per framework so they
    agree) with `lr`, or a mapping {framework: native optimizer} (torch: a callable params ->
    optimizer), audited against each other.
    init: "reference" copies the reference's initial weights into every model; "as_given"
    keeps each model's own and explains any that differ.
    dropout: "off" (every Dropout the identity, noted) or "native" (each framework draws its
    own masks: compare the test metrics).
    record_every: record the weights after every k-th step; None (default) records every step
    while all models' records fit in `zoo.compare.RECORD_BUDGET_MB`, else the smallest stride
    that fits (noted; the layer-by-layer check at the divergent step needs every step).
    """
    from zoo.agreement import TOLERANCES
    from zoo.compare import FrameworkResult, align
    from zoo.data import batch_order, check_batch_size
    from zoo.optimizers import OptimizerSpec
    from zoo.specs import History, TrainSpec

    t_start = time.perf_counter()
    if not isinstance(models, Mapping) or not models:
        raise ConfigError("models must be a mapping of framework name to model, e.g. "
                          "{'keras': keras_model, 'torch': torch_module}.")
    known = registry.names(own_models=True)
    for fw in models:
        registry.get(fw, known)
    if len(models) < 2:
        raise ConfigError(f"compare at least two models; got only {', '.join(models)}.")
    reference = reference or next(iter(models))
    if reference not in models:
        raise ConfigError(f"the reference {reference!r} is not among the models "
                          f"({', '.join(models)}).")
    if init not in ("reference", "as_given"):
        raise ConfigError(f"init must be 'reference' or 'as_given', got {init!r}.")
    if dropout not in ("off", "native"):
        raise ConfigError(f"dropout must be 'off' or 'native', got {dropout!r}.")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    check_batch_size(batch_size)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}.")
    order = [reference, *[fw for fw in models if fw != reference]]
    registry.import_in_order(order)
    ds = _data(data, seed)
    layouts = dict(layouts or {})

    # 1. read every model
    handles, descs, views = {}, {}, {}
    for fw in order:
        handles[fw], descs[fw], views[fw] = _prepare(fw, models[fw], ds.X_train, dtype,
                                                     layouts.get(fw))
    natives = {fw: list(adapter(fw).get_weights(handles[fw])) for fw in order}
    matched = match(descs, reference, natives, mapping, views)
    for fw, names in matched.frozen.items():
        adapter(fw).freeze(handles[fw], names)
    losses = {fw: _loss_spec(loss, fw, ds.task) for fw in order}
    opt_settings, opts = {}, {}
    for fw in order:
        opts[fw], s = _optimizer(optimizer, lr, fw, dtype)
        if s is not None:
            opt_settings[fw] = s
    findings = audit(descs, matched, losses, opt_settings or None)
    notes = list(matched.notes)
    stateful = opts[reference].spec is None or opts[reference].spec.name != "sgd"
    for fw in order:
        if stateful and getattr(adapter(fw), "DENSE_GRADIENTS", False) and \
                any(f.kind == "embedding" for f in descs[fw].layers):
            findings.append(Finding(
                fw, None, None, "embedding gradient", "dense", "sparse",
                f"{fw}: its optimizers take an Embedding's sparse gradient slice by slice (a "
                "row looked up k times gets k squared slices in Adam's and RMSprop's second "
                "moment, not the square of their sum); the comparison hands the optimizer the "
                "dense gradient, as torch and TF1 compute it. Your own fit() does not: make the "
                "gradient dense (tf.convert_to_tensor) or expect Adam/RMSprop to differ.",
                "handled"))
    # 2. initial weights
    ref_native = adapter(reference).get_weights(handles[reference])
    init_canon = matched.to_canonical(reference, ref_native)
    init_problems: dict[str, list[str]] = {}
    given = {fw: adapter(fw).get_weights(handles[fw]) for fw in order} \
        if init == "as_given" else None
    atol, rtol = TOLERANCES[dtype]
    for fw in order[1:]:
        if init == "reference":
            adapter(fw).set_weights(handles[fw], matched.to_native(fw, init_canon))
        else:
            native = adapter(fw).get_weights(handles[fw])
            for row in matched.rows:
                got = row.spec.from_native_arrays(fw, native)
                want = init_canon[row.name]
                if not np.allclose(got, want, atol=atol, rtol=rtol):
                    why = explain_mismatch(row, fw, want, native) or \
                        f"differs from the reference's by up to {np.max(np.abs(got - want)):.3g}"
                    init_problems.setdefault(fw, []).append(f"{row.name} ({fw}): {why}")
    if any(f.kind == "dropout" and f.config.get("rate", 0) for d in descs.values()
           for f in d.layers):
        notes.append("dropout is switched off in every model for the comparison (one run "
                     "must see the same computation in each framework); dropout='native' "
                     "trains with each framework's own masks: compare the test metrics."
                     if dropout == "off" else
                     "native dropout: every framework draws its own masks, so weights and "
                     "losses are expected to differ; compare the test metrics.")
    # 3. train
    n = len(ds.X_train)
    record_every, stride_note = _stride(record_every, matched, n, batch_size, epochs, dtype,
                                        len(order))
    if stride_note:
        notes.append(stride_note)
    batches = [[np.asarray(b) for b in batch_order(n, batch_size, seed, e)] for e in range(epochs)]
    results: dict[str, FrameworkResult] = {}
    X_views = {fw: _view(ds.X_train, views[fw]) for fw in order}
    for fw in order:
        plan = TrainPlan(losses[fw], opts[fw], batches, dtype, record_every, dropout,
                         matched.frozen.get(fw, ()),
                         "biased" if any(f.kind == "batch_norm" for f in descs[fw].layers)
                         and _corrects(fw) else None)

        def prog(e, s, value, fw=fw):
            if progress is not None:
                progress(fw, e, s, value)
        t0 = time.perf_counter()
        oh: OwnHistory = adapter(fw).train(handles[fw], plan, X_views[fw], ds.y_train, prog)
        train_seconds = time.perf_counter() - t0
        hist = History(fw, np.asarray(oh.losses, np.float64),
                       matched.to_canonical(fw, oh.weights), list(oh.epoch_seconds),
                       [matched.to_canonical(fw, w) for w in oh.step_weights] or None,
                       oh.stopped_at, weights_every=max(1, record_every))
        out = adapter(fw).predict(handles[fw], _view(ds.X_test, views[fw]))
        results[fw] = FrameworkResult(fw, hist, _metrics(out, ds, descs[fw].output), 0.0,
                                      train_seconds)
    tol = TOLERANCES[dtype]
    align(results, reference, tol)
    opt_spec = opts[reference].spec or OptimizerSpec(
        opt_settings[reference].name if opt_settings[reference].name in
        ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adagrad") else "sgd",
        lr=opt_settings[reference].lr)
    train_spec = TrainSpec(opt_spec, epochs=epochs, batch_size=batch_size, seed=seed,
                           dtype=dtype, dropout_mode=dropout)
    info = OwnModelInfo("your models", {fw: [_found_json(f) for f in d.layers]
                                        for fw, d in descs.items()})
    comp = OwnComparison(info, train_spec, ds.name, reference, tol, results, notes=notes,
                         init=init_canon, split=ds.split, findings=findings,
                         weight_table=matched.table(), label_names=ds.label_names)
    from zoo.compare import timing_note

    comp.notes += [f"audit: {f.message}" for f in findings]
    comp.notes.append(timing_note(1, epochs).rstrip(".") + "; the models trained one after "
                      "another in this process.")
    for fw, r in results.items():
        if r.history.stopped_at is not None:
            comp.notes.append(f"{fw}: the loss became non-finite at step {r.history.stopped_at}; "
                              "training stopped there (try a smaller learning rate).")
    # 4. diagnosis
    if diagnose:
        for fw in order[1:]:
            r = results[fw]
            if r.first_divergent_step is None and not init_problems.get(fw):
                continue
            comp.diagnoses[fw] = _diagnose(fw, reference, handles, matched, descs, views, ds,
                                           batches, results, init_canon, findings,
                                           init_problems.get(fw, []), dtype, given)
    comp.wall_seconds = time.perf_counter() - t_start
    return comp


def _stride(record_every: int | None, matched: Matched, n: int, batch_size: int, epochs: int,
            dtype: str, n_models: int) -> tuple[int, str | None]:
    """The weight-recording stride: as given, or the smallest that keeps every model's
    per-step weights within the comparison's memory budget."""
    from zoo.compare import RECORD_BUDGET_MB

    if record_every is not None:
        if isinstance(record_every, bool) or not isinstance(record_every, int) or \
                record_every < 0:
            raise ConfigError(f"record_every must be an integer >= 0 (0: final weights only), "
                              f"got {record_every!r}.")
        return record_every, None
    steps = -(-n // batch_size) * epochs
    n_params = sum(int(np.prod(r.spec.shape)) for r in matched.rows)
    mb = steps * n_params * np.dtype(dtype).itemsize * n_models / 2**20
    every = max(1, math.ceil(mb / RECORD_BUDGET_MB))
    if every == 1:
        return 1, None
    return every, (f"weights recorded every {every} steps, not after each step: all {steps:,} "
                   f"steps would take {mb:,.0f} MB (budget {RECORD_BUDGET_MB:,.0f} MB); losses "
                   "are compared at every step. record_every=1 records every step.")


def _found_json(f: Found) -> dict[str, Any]:
    cfg = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
           for k, v in f.config.items() if k != "native"}
    return {"name": f.name, "kind": f.kind, "config": cfg, "tensors": dict(f.tensors),
            "output_shape": list(f.output_shape)}


def _prepare(fw: str, model: Any, X: np.ndarray, dtype: str, layout: str | None):
    """The adapter's handle, description and input view of one model: the first view of
    VIEWS[fw] (or `layout`) under which the model runs."""
    mod = adapter(fw)
    candidates = (layout,) if layout else (_views(fw) if X.ndim == 4 else (None,))
    errors = []
    for view in candidates:
        Xv = _view(X[:8], view) if view else X[:8]
        try:
            h = mod.prepare(model, Xv, dtype)
            d = mod.describe(h, Xv)
            return h, d, view
        except UnsupportedLayer:  # the model itself, whatever its input
            raise
        except Exception as exc:  # the user's model refused this input layout: try the next
            if len(candidates) == 1:
                raise
            errors.append(f"{view}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
    raise ConfigError(f"the {fw} model runs on none of the input layouts tried for "
                      f"{tuple(X.shape[1:])} images ({'; '.join(errors)}); pass "
                      f"layouts={{'{fw}': 'nhwc'|'nchw'|'flat'|'rows'}}.")


def _metrics(out: np.ndarray, ds: OwnData, output: str) -> dict[str, float]:
    out = np.asarray(out, np.float64)
    if ds.task == "regression":
        return {"mse": float(np.mean((out.reshape(len(out), -1) - ds.y_test) ** 2))}
    if out.ndim == 2 and out.shape[1] == 1 or out.ndim == 1:
        thr = 0.5 if output in ("sigmoid", "probabilities") else 0.0
        pred = (out.reshape(-1) > thr).astype(np.int64)
    else:
        pred = out.argmax(axis=-1)
    return {"accuracy": float(np.mean(pred == ds.y_test.reshape(-1)))}


def _diagnose(fw, reference, handles, matched, descs, views, ds, batches, results,
              init_canon, findings, init_problems, dtype, given=None) -> OwnDiagnosis:
    from zoo.agreement import TOLERANCES

    r, ref_hist = results[fw], results[reference].history
    step = r.first_divergent_step
    mine = [f for f in findings if f.framework == fw and f.severity == "differs"]
    checks = []
    flat = [b for e in batches for b in e]
    steps = [0] + ([step] if step not in (None, 0) else [])
    for s in steps:
        if s >= len(flat):
            continue
        if s == 0:
            weights = init_canon
        elif ref_hist.step_weights and ref_hist.weights_every == 1 and \
                s - 1 < len(ref_hist.step_weights):
            weights = ref_hist.step_weights[s - 1]
        else:
            continue
        # step 0 of models that keep their own initial weights: each from its own
        checks.append(_layer_check(fw, reference, handles, matched, descs, views, ds,
                                   flat[s], weights, s, TOLERANCES[dtype],
                                   given if s == 0 else None))
    at = next((c for c in reversed(checks) if c.first_layer), None)
    layer, diff = (at.first_layer, at.difference) if at else (None, 0.0)
    if init_problems:
        cause = "the initial weights differ: " + "; ".join(t.rstrip(".") for t in init_problems)
    elif layer and any(f.layer == layer for f in mine):
        cause = "; ".join(f.message.rstrip(".") for f in mine if f.layer == layer)
    elif mine:
        cause = "; ".join(f.message.rstrip(".") for f in mine)
    elif layer:
        cause = (f"the output of {layer} differs with the same inputs and weights: a different "
                 "computation in that layer (its settings audited equal)")
    elif step is not None:
        cause = ("the forward pass agrees at every layer at that step, so the difference is in "
                 "the loss, the gradients or the update (optimizer settings, float32 rounding "
                 "growing over many steps)")
    else:
        cause = "see the initial weights"
    return OwnDiagnosis(fw, reference, step, cause, layer, diff, list(init_problems),
                        [f.message for f in mine], checks)


def _layer_check(fw, reference, handles, matched, descs, views, ds, idx, weights, step, tol,
                 native: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> LayerCheck:
    """Both models from the same canonical weights on the same batch (training mode): the
    output of each stage (a weighted layer and what follows it up to the next), compared."""
    atol, rtol = tol
    X = ds.X_train[idx]
    outs = {}
    stage_end = {}
    for side in (reference, fw):
        mod = adapter(side)
        mod.set_weights(handles[side], native[side] if native is not None
                        else matched.to_native(side, weights))
        desc = descs[side]
        ends = {}
        for name, a, b in matched.pairs[fw if side == fw else reference]:
            f = b if side == fw else a
            # the stage's last computing layer: a trailing flatten, reshape or dropout only
            # moves (or, switched off, keeps) values, and flattening mixes the layouts
            stage = [g for g in _stage(desc, f)]
            while stage and stage[-1].kind in ("flatten", "reshape", "permute", "dropout"):
                stage.pop()
            ends[name] = (stage[-1] if stage else f)
        stage_end[side] = ends
        outs[side] = mod.layer_outputs(handles[side], _view(X, views[side]),
                                       [f.name for f in ends.values()], True)
    diffs = {}
    first, first_native, first_diff = None, None, 0.0
    ref_ends = stage_end[reference]
    for name in ref_ends:
        ra = ref_ends[name]
        fa = stage_end[fw][name]
        a = np.asarray(outs[reference][ra.name], np.float64)
        b = _to_ref_layout(fw, outs[fw][fa.name], a.shape[1:])
        # a recurrent layer's whole sequence against its last step (torch returns the
        # sequence; `out[:, -1]` in the forward picks the step)
        if b.ndim == a.ndim + 1 and b.shape[0] == a.shape[0] and b.shape[2:] == a.shape[1:]:
            b = b[:, -1]
        elif a.ndim == b.ndim + 1 and a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[1:]:
            a = a[:, -1]
        if a.shape != b.shape:
            diffs[name] = float("nan")
            continue
        if name == list(ref_ends)[-1]:
            ka, kb = descs[reference].output, descs[fw].output
            if ka == "probabilities" and kb != "probabilities":
                b = _softmax(b)
            elif kb == "probabilities" and ka != "probabilities":
                a = _softmax(a)
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        diffs[name] = d
        if first is None and np.any(np.abs(a - b) > atol + rtol * np.abs(a)):
            first, first_native, first_diff = name, fa.name, d
    return LayerCheck(step, diffs, first, first_native, first_diff)


# ----------------------------------------------------------------------------- the command line
def load_user_model(text: str) -> tuple[str, Any]:
    """`zoo compare --model FRAMEWORK=PATH.py:NAME`: import PATH.py as the user's own trusted
    code and return (framework, model). NAME is a function or class returning the model
    (called with no arguments); for tf1, the graph-building function itself (taking the
    input placeholder) is the model. Every mistake is one ConfigError naming it."""
    import importlib.util
    import inspect
    import sys
    from pathlib import Path

    usage = "--model takes FRAMEWORK=PATH.py:NAME, e.g. --model torch=my_models.py:Net"
    fw, eq, rest = text.partition("=")
    if not eq or not rest:
        raise ConfigError(f"--model {text!r}: {usage}.")
    fw = fw.strip()
    registry.get(fw, registry.names(own_models=True))
    path_text, colon, name = rest.rpartition(":")
    if not colon or not path_text or not name:
        raise ConfigError(f"--model {text!r}: no NAME after the file; {usage}.")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"--model {text!r}: no such file {path_text}; pass the path of the "
                          "Python file that defines the model.")
    registry.import_in_order(registry.names(own_models=True))
    mod_name = f"zoo_user_{fw}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"--model {text!r}: importing {path_text} failed "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                          ".") from None
    if not hasattr(module, name):
        found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                 and getattr(v, "__module__", None) == mod_name]
        raise ConfigError(f"--model {text!r}: {path_text} defines no {name!r}; it defines "
                          f"{', '.join(found) or 'no functions or classes'}.")
    obj = getattr(module, name)
    if not callable(obj):
        raise ConfigError(f"--model {text!r}: {name} is a {type(obj).__name__}, not a function "
                          "or class returning the model.")
    if fw == "tf1":
        try:
            n_params = len(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            n_params = 1
        if n_params >= 1:
            return fw, obj
    try:
        model = obj()
    except Exception as exc:
        raise ConfigError(f"--model {text!r}: calling {name}() failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); NAME must build "
                          "the model with no arguments.") from None
    check = getattr(adapter(fw), "check_model", None)
    if check is not None:
        problem = check(model)
        if problem:
            raise ConfigError(f"--model {text!r}: {name}() returned {problem}.")
    return fw, model
