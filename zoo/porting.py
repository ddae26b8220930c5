"""The porting reference (docs/porting.md): its data and its generator.

Everything the document says comes from here or from the project's own files:
- `ROWS`: the TF1.x | TF2 / Keras 3 | PyTorch mapping table; each row names the test that runs
  all three sides and asserts that their numbers are equal.
- `GOTCHAS`: the differences that break equality; each names its test, which asserts the
  difference (`> above`, or the exception `raises`) and then that the fix removes it
  (`< below`). The tests read `above` and `below` from here, so the numbers in the document
  are the bounds the tests assert.
- `EXAMPLES`: the seeds' snippets, kept as runnable files in docs/examples/ and copied into
  the document verbatim.
- `SECTIONS`: the side-by-side code of the quadratic demo and of every model, cut out of the
  framework packages' source with `ast` (so nothing is copied by hand and no framework is
  imported to generate the document).

`render(root)` returns the document; `scripts/gen_porting.py` writes it or (with --check)
fails when docs/porting.md differs, and tests/test_porting.py checks the same and executes
every ```python block of the document. Framework-free: nothing here imports a framework.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXAMPLES", "GOTCHAS", "ROWS", "SECTIONS", "Gotcha", "Row", "gotcha",
           "render", "source_of"]

ROOT = Path(__file__).resolve().parent.parent
DOC = "docs/porting.md"
#: the marker written before every block cut out of a module: the document tests execute
#: such a block in a copy of that module's namespace
SOURCE_MARK = "<!-- source: "


@dataclass(frozen=True)
class Row:
    topic: str
    tf1: str
    tf2: str
    torch: str
    watch: str
    test: str


@dataclass(frozen=True)
class Gotcha:
    key: str
    title: str
    difference: str
    fix: str
    test: str
    #: the test asserts the difference is larger than this (None: it asserts `raises`)
    above: float | None
    #: the test asserts that after the fix the difference is smaller than this
    below: float
    raises: str | None = None


_P = "tests/test_porting.py::"

ROWS: tuple[Row, ...] = (
    Row("inputs",
        "`x = tf.compat.v1.placeholder(tf.float32, (None, F))`; values go in through "
        "`session.run(t, feed_dict={x: X})`",
        "no placeholders: call the model, `model(X)`, or pass tensors as `tf.function` "
        "arguments",
        "no placeholders: `model(torch.from_numpy(X))`",
        "a placeholder casts a float64 feed to its dtype; Keras casts silently to float32; "
        "`nn.Linear` on float64 raises (`X.astype(np.float32)`)",
        _P + "test_row_placeholder_feed_dict"),
    Row("running",
        "`session.run(train)`, `session.run(w)`: nothing runs outside a Session",
        "eager: every line runs; read values with `.numpy()`",
        "eager: `loss.backward(); opt.step()`; read with `.item()` / `.numpy()`",
        "a TF1 graph needs `with tf.Graph().as_default():` and `Session(graph=g)` under TF2; "
        "never `disable_eager_execution()` (gotcha below)",
        _P + "test_row_session_run"),
    Row("initialising",
        "`session.run(tf.compat.v1.global_variables_initializer())` after the optimizer "
        "exists (its slots are variables too)",
        "variables hold their value from creation",
        "parameters hold their value from creation",
        "reading a TF1 variable before the initializer raises `FailedPreconditionError`; an "
        "initializer built before `minimize` misses the optimizer's slots (the train op then "
        "fails with `InternalError: Invalid variable reference`)",
        _P + "test_row_global_variables_initializer"),
    Row("variables and initialisers",
        "`tf.compat.v1.get_variable(name, initializer=tf.constant(W))`; without an "
        "initializer: glorot_uniform for every float variable, biases and scalars included",
        "`Dense`: glorot_uniform kernel, zero bias; load with `model.set_weights` / "
        "`kernel.assign`",
        "`nn.Linear`: kaiming_uniform(a=sqrt(5)) weight U(+-1/sqrt(in)) and a random bias; "
        "load with `weight.copy_(W.T)`",
        "never rely on a default: draw the initial weights once in numpy "
        "(`zoo.specs.init_weights`) and load them everywhere",
        _P + "test_row_get_variable"),
    Row("optimizers",
        "`tf.compat.v1.train.GradientDescentOptimizer(lr)` (`MomentumOptimizer`, "
        "`RMSPropOptimizer`, `AdamOptimizer`, `AdagradOptimizer`) and "
        "`.minimize(loss, var_list=...)`",
        "`keras.optimizers.SGD(learning_rate=lr)` (`RMSprop`, `Adam`, `Adagrad`): no "
        "`minimize`; `GradientTape` + `apply_gradients(zip(grads, vars))`",
        "`torch.optim.SGD(params, lr=lr)` (`RMSprop`, `Adam`, `Adagrad`): `zero_grad(); "
        "loss.backward(); step()`",
        "defaults differ (lr, epsilon, rho/alpha, betas, initial accumulator): pass every "
        "hyperparameter, translated by `zoo.optimizers` (gotchas below)",
        "tests/test_quadratic.py::test_optimizer_frameworks_agree_every_step"),
    Row("cross-entropy",
        "`tf.nn.softmax_cross_entropy_with_logits_v2(labels=onehot, logits=z)` (per sample: "
        "add `tf.reduce_mean`) or the `sparse_` version with integer labels",
        "`keras.losses.CategoricalCrossentropy(from_logits=True)` (one-hot) or "
        "`SparseCategoricalCrossentropy(from_logits=True)` (labels); mean over the batch",
        "`nn.CrossEntropyLoss()`: logits and int64 class indices; mean over the batch",
        "give logits, never probabilities (Keras clips them at 1e-7); TF1 returns per-sample "
        "losses",
        _P + "test_row_cross_entropy"),
    Row("saving",
        "`tf.compat.v1.train.Saver().save(sess, path)` / `.restore`",
        "`tf.train.Checkpoint(...).write` / `.read`, or `model.save('m.keras')` / "
        "`keras.models.load_model`",
        "`torch.save(model.state_dict(), p)` / `load_state_dict(torch.load(p, "
        "weights_only=True))`",
        "names and layouts differ: a torch `weight` is the transposed kernel "
        "(`zoo convert` translates between the three formats)",
        _P + "test_row_checkpoints"),
    Row("dense layer",
        "`tf.compat.v1.layers.dense(x, units)` raises \"`dense` is not available with "
        "Keras 3\": use `get_variable` + `tf.matmul(x, kernel) + bias`",
        "`keras.layers.Dense(units)`: kernel (in, out)",
        "`nn.Linear(in, out)`: weight (out, in)",
        "copy `kernel.T` into `weight`; a square layer accepts the untransposed kernel "
        "silently (gotcha below)",
        _P + "test_row_dense_layer"),
    Row("dropout",
        "`tf.compat.v1.nn.dropout(x, keep_prob=0.75)` (always on; TF2 spelling "
        "`rate=0.25`)",
        "`keras.layers.Dropout(rate=0.25)`: on only when `training=True` (`fit`)",
        "`nn.Dropout(p=0.25)`: on in train mode (`model.train()`, the default)",
        "keep_prob = 1 - rate = 1 - p; all three scale kept units by 1/keep_prob",
        _P + "test_row_dropout"),
    Row("one-hot",
        "`tf.one_hot(labels, C)` (float32)",
        "`keras.utils.to_categorical(labels, C)` (float64 numpy) or `tf.one_hot`",
        "`F.one_hot(labels, C)` (int64: `.float()` before a loss)",
        "the dtypes differ; `nn.CrossEntropyLoss` and the `Sparse` Keras losses take the "
        "labels themselves",
        _P + "test_row_one_hot"),
    Row("convolution",
        "`tf.compat.v1.nn.conv2d(x, kernel, strides=[1, s, s, 1], padding='SAME') + bias` "
        "with `get_variable` (`tf.compat.v1.layers.conv2d` raises \"`conv2d` is not "
        "available with Keras 3\"); kernel (kh, kw, in, out)",
        "`keras.layers.Conv2D(filters, k, strides=s, padding='same')`: kernel (kh, kw, in, "
        "out), HWIO",
        "`nn.Conv2d(in, out, k, stride=s)`: weight (out, in, kh, kw), OIHW",
        "`weight = kernel.transpose(3, 2, 0, 1)`, never a reshape (gotcha below)",
        _P + "test_row_convolution"),
    Row("data format",
        "NHWC (`data_format='NHWC'`, the default)",
        "NHWC (`channels_last`, the default)",
        "NCHW: `x.permute(0, 3, 1, 2)` at the model's edge",
        "a NHWC batch given to `nn.Conv2d` raises only when C differs from the expected "
        "channels; 8 images of 3x3 pixels with 3 channels pass silently as the wrong axes",
        _P + "test_row_data_format"),
    Row("flatten after a convolution",
        "`tf.reshape(h, [-1, H * W * C])`: H, W, C order",
        "`keras.layers.Flatten()`: H, W, C order",
        "`nn.Flatten()` on NCHW: C, H, W order",
        "the first Dense after the Flatten needs its kernel rows permuted: "
        "`kernel.reshape(H, W, C, out).transpose(2, 0, 1, 3).reshape(-1, out)` (gotcha below)",
        _P + "test_row_flatten_order"),
    Row("'same' padding with a stride",
        "`padding='SAME'`: out = ceil(in / s); an odd total pads one more at the bottom "
        "and right",
        "`padding='same'`: as TF1",
        "`padding='same'` refuses stride > 1; pad explicitly: `nn.ZeroPad2d((left, right, "
        "top, bottom))` then `padding=0`",
        "a symmetric `padding=1` with stride 2 on an even input gives the same shape and "
        "other numbers (gotcha below)",
        _P + "test_row_same_padding_stride"),
    Row("pooling",
        "`tf.compat.v1.nn.max_pool2d(x, 2, 2, 'VALID')`, `avg_pool2d`",
        "`keras.layers.MaxPooling2D(2)`, `AveragePooling2D(2)` (strides default to the pool "
        "size, 'valid')",
        "`nn.MaxPool2d(2)`, `nn.AvgPool2d(2)` (stride defaults to the kernel size, floor)",
        "all three drop the last row/column of an odd input ('valid' / `ceil_mode=False`)",
        _P + "test_row_pooling"),
    Row("batch normalisation",
        "`mean, var = tf.nn.moments(x, [0, 1, 2])`, `tf.nn.batch_normalization(x, mean, var, "
        "beta, gamma, eps)`, and `moving.assign(m * moving + (1 - m) * batch)` ops added to "
        "`tf.GraphKeys.UPDATE_OPS` (`tf.compat.v1.layers.batch_normalization` raises)",
        "`keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)`",
        "`nn.BatchNorm2d(C, eps=1e-3, momentum=0.01)`, then the running variance corrected "
        "to the biased update (`zoo.layers.corrected_moving_variance`)",
        "momentum means the opposite thing in torch, epsilon defaults differ, torch's running "
        "variance is unbiased, TF1 needs its update ops (gotchas below)",
        _P + "test_row_batch_normalisation"),
    Row("layer normalisation",
        "`mean, var = tf.nn.moments(x, [1], keepdims=True)`, `(x - mean) * "
        "tf.math.rsqrt(var + eps) * gamma + beta`",
        "`keras.layers.LayerNormalization(epsilon=1e-3)`",
        "`nn.LayerNorm(F, eps=1e-3)`",
        "epsilon: Keras 1e-3, torch 1e-5; both use the biased variance",
        _P + "test_row_layer_normalisation"),
    Row("training and inference modes",
        "a `training` placeholder (default False) chooses batch or moving statistics; fed "
        "True only with the train op",
        "`fit` calls the model with `training=True`; `model(x)`, `predict` and `evaluate` "
        "use the moving statistics",
        "`model.train()` for training, `model.eval()` before predicting (`torch.no_grad()` "
        "does not change the mode)",
        "a torch model left in train mode predicts with each batch's own statistics (gotcha "
        "below)",
        _P + "test_row_training_and_inference_modes"),
    Row("LSTM",
        "`tf.compat.v1.nn.rnn_cell.LSTMCell` raises under Keras 3: `get_variable` kernels and "
        "`tf.scan` over time, gates i, f, c, o",
        "`keras.layers.LSTM(u)`: kernel (F, 4u), recurrent_kernel (u, 4u), bias (4u,), gates "
        "i, f, c, o",
        "`nn.LSTM(F, u, batch_first=True)`: weight_ih (4u, F), weight_hh (4u, u), gates i, f, "
        "g, o (the same order), TWO biases",
        "transpose the kernels; the bias goes into bias_ih with bias_hh zero and frozen; "
        "`batch_first=True` (gotchas below)",
        _P + "test_row_lstm"),
    Row("GRU",
        "`GRUCell` raises under Keras 3: the equations over `tf.scan`",
        "`keras.layers.GRU(u)` (reset_after=True): gates z, r, h, bias (2, 3u)",
        "`nn.GRU(F, u, batch_first=True)`: gates r, z, n, bias_ih and bias_hh",
        "swap the z and r blocks of every tensor; bias row 0 is bias_ih, row 1 bias_hh; Keras "
        "2's reset_after=False GRU has no torch layer (gotchas below)",
        _P + "test_row_gru"),
    Row("embedding",
        "`tf.nn.embedding_lookup(table, ids)` with a `get_variable` table",
        "`keras.layers.Embedding(vocab, dim)`",
        "`nn.Embedding(vocab, dim)` (ids must be int64 tensors)",
        "the same (vocab, dim) table everywhere; initialisers differ (Keras U(-0.05, 0.05), "
        "torch N(0, 1))",
        _P + "test_row_embedding"),
    Row("quadratic cost (seed 001)",
        "`0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(y - tf.sigmoid(z)), axis=1))`",
        "a custom loss: `0.5 * ops.mean(ops.sum(ops.square(y - ops.sigmoid(z)), axis=1))`",
        "`0.5 * ((torch.sigmoid(z) - y) ** 2).sum(1).mean()`",
        "C = 1/(2n) sum ||y - a||^2 sums over the outputs; Keras's `mse` averages over them "
        "too (gotcha below)",
        _P + "test_row_quadratic_cost"),
    Row("ONNX export",
        "`tf2onnx.convert.from_graph_def(graph_def, input_names=['x:0'], "
        "output_names=['probs:0'], opset=18)` on a frozen graph (variables made constants)",
        "`model.export('m.onnx', format='onnx', opset_version=18)` (tf2onnx on the TensorFlow "
        "backend)",
        "`torch.onnx.export(model.eval(), (x,), dynamo=True, opset_version=18, "
        "optimize=False, dynamic_shapes=...)` (needs onnxscript)",
        "the zoo exports every format from its torch translation, opset 18 (`zoo convert "
        "WEIGHTS m.onnx`), and checks it in ONNX Runtime: predictions equal to 1e-6, weights "
        "back from the initializers bit for bit (`optimize=True` folds BatchNorm into the "
        "convolutions and renames tensors); export in eval mode, or dropout stays in",
        _P + "test_row_onnx_export"),
    Row("TF1 layer code and its checkpoints",
        "`tf.compat.v1.layers.dense` / `conv2d` / `batch_normalization`, "
        "`rnn_cell.LSTMCell` + `dynamic_rnn`: they run with TF_USE_LEGACY_KERAS=1 set before "
        "TensorFlow is imported (Keras 2); `Saver` checkpoints name `dense/kernel`, "
        "`batch_normalization/moving_mean`, `rnn/lstm_cell/kernel`",
        "`keras.layers.Dense`, `Conv2D`, `BatchNormalization`, `LSTM`; "
        "`zoo convert OLD.ckpt NEW.keras` reads a TF1 layer checkpoint by its names",
        "`nn.Linear`, `nn.Conv2d`, `nn.BatchNorm2d`, `nn.LSTM`; `zoo convert OLD.ckpt NEW.pt`",
        "one process cannot hold Keras 2 and Keras 3 (the zoo's tf1-layers framework runs in "
        "its own); the LSTM kernel is one tensor over [x, h], gates i, j, f, o, forget_bias "
        "added at run time (gotchas below); `zoo inspect OLD.ckpt` shows the mapping",
        "tests/test_tf1_layers.py::test_tf1_layer_checkpoints_convert_to_keras_and_torch"),
)

GOTCHAS: tuple[Gotcha, ...] = (
    Gotcha("adam_epsilon", "Adam epsilon: placement and default",
           "Keras and TF1 add epsilon to sqrt(v) before bias correction (\"epsilon hat\"), "
           "torch after it; defaults Keras 1e-7, TF1 and torch 1e-8. Measured on a flat "
           "quadratic (gradients ~1e-5), 300 steps, Keras vs torch",
           "epsilon=1e-20 in all three (`OptimizerSpec`'s default; 0 gives NaN for a gradient "
           "that is always zero)",
           _P + "test_gotcha_adam_epsilon", above=1e-2, below=1e-6),
    Gotcha("rmsprop_epsilon", "RMSprop epsilon: placement and default",
           "Keras (1e-7) and TF1 (1e-10) add epsilon inside the square root, torch (1e-8) "
           "outside. Same rho/alpha, flat quadratic, 300 steps, Keras vs torch",
           "epsilon=1e-20 in all three", _P + "test_gotcha_rmsprop_epsilon",
           above=1.0, below=1e-6),
    Gotcha("adam_betas", "Keras's Adam betas rounded to float32",
           "Keras computes 1 - beta in float64 but beta**t in float32: with beta_2 = 0.999 "
           "its first step is 0.9999933*lr. Seed quadratic, 1000 steps, epsilon 1e-20, "
           "Keras vs torch",
           "float32-exact betas in all three: `float(np.float32(0.9))`, "
           "`float(np.float32(0.999))` (`zoo.optimizers.BETA_1`, `BETA_2`)",
           _P + "test_gotcha_adam_betas", above=5e-6, below=1e-6),
    Gotcha("tf1_adam_beta_powers", "TF1 Adam's beta powers",
           "`AdamOptimizer` keeps beta1^t and beta2^t in float32 variables (for Python-float "
           "betas) and multiplies them by beta every step, so their rounding accumulates; "
           "Keras computes pow(beta, t) afresh in float32, torch in float64. The digits MLP, "
           "Adam lr 5e-3, 10 epochs (450 steps), float32: TF1 against the float64 reference "
           "(Keras and torch stay within 1e-5 of it here)",
           "pass the (float32-exact) betas as float64 tensors, `AdamOptimizer(lr, "
           "beta1=tf.constant(b1, tf.float64), beta2=tf.constant(b2, tf.float64))`: the "
           "accumulators become float64 and are cast to float32 where used "
           "(`tf1_compat.optimizers.make_optimizer`)",
           _P + "test_gotcha_tf1_adam_beta_powers", above=1e-2, below=1e-4),
    Gotcha("rmsprop_rho_alpha", "RMSprop rho against alpha",
           "Keras `rho` (default 0.9) is torch's `alpha` (default 0.99) and TF1's `decay`. "
           "Seed quadratic, 300 steps, Keras rho 0.9 vs torch's default alpha",
           "`alpha=rho` (and `decay=rho`)", _P + "test_gotcha_rmsprop_rho_alpha",
           above=0.1, below=1e-6),
    Gotcha("rmsprop_tf1_ones", "TF1's RMSprop accumulator starts at one",
           "`RMSPropOptimizer` creates its 'rms' slot with a ones initializer (Keras and "
           "torch start at zero). Seed quadratic, 300 steps, TF1 vs Keras",
           "after the variable initializer, zero the slot: "
           "`sess.run(opt.get_slot(w, 'rms').assign(tf.zeros_like(w)))` "
           "(`tf1_compat.optimizers.after_init`)",
           _P + "test_gotcha_rmsprop_tf1_ones", above=1e-3, below=1e-6),
    Gotcha("adagrad_accumulator", "Adagrad's initial accumulator",
           "Keras and TF1 start the accumulator at 0.1, torch at 0 (its first step is "
           "lr*sign(g)). Flat quadratic, 300 steps, torch default vs Keras",
           "torch `initial_accumulator_value=0.1`", _P + "test_gotcha_adagrad_accumulator",
           above=0.1, below=1e-6),
    Gotcha("momentum_lr_change", "Momentum under a learning-rate change",
           "Keras keeps lr inside the velocity (m = mu*m - lr*g; w += m), TF1 and torch "
           "outside (b = mu*b + g; w -= lr*b): equal while lr is constant. lr 0.1 -> 0.01 at "
           "step 20 of 60, Keras vs torch (TF1 equals torch)",
           "keep lr constant, or at the change multiply Keras's `opt.momentums` by "
           "lr_new / lr_old", _P + "test_gotcha_momentum_lr_change", above=0.1, below=1e-6),
    Gotcha("weight_decay", "Decoupled weight decay against L2",
           "Keras's `weight_decay` (any optimizer) is decoupled, w -= lr*wd*w before the "
           "update; torch's `Adam(weight_decay=)` adds wd*w to the gradient (L2); TF1 has "
           "neither. lr 0.1, wd 0.1, 100 steps (|w| up to 2.7): Keras "
           "`Adam(weight_decay=0.1)` vs torch `Adam(weight_decay=0.1)`, and the same for "
           "`SGD(momentum=0.9, weight_decay=0.1)`",
           "torch `AdamW(weight_decay=wd)`; for torch's L2 (e.g. `SGD(momentum=0.9, "
           "weight_decay=wd)`) write 0.5*wd*sum(w**2) into the Keras loss", _P + "test_gotcha_weight_decay", above=0.1, below=5e-6),
    Gotcha("default_initialisers", "Default initialisers",
           "Keras: glorot_uniform kernel, zero bias; torch: U(+-1/sqrt(in)) weight and a "
           "random bias; TF1 `get_variable`: glorot_uniform for the bias too. A 64 -> 64 "
           "layer built with each default: the largest |bias| of torch and of TF1",
           "draw the weights once in numpy (`zoo.specs.init_weights`) and load them: the "
           "three then hold the same weights (difference 0)",
           _P + "test_gotcha_default_initialisers", above=0.05, below=1e-12),
    Gotcha("square_layout", "Dense against Linear layout",
           "a Keras kernel is (in, out), a torch weight (out, in). A 64 -> 32 kernel put in "
           "as is (`lin.weight = nn.Parameter(kernel)`) makes the forward pass raise; a "
           "square 64 -> 64 one copied as is is accepted silently and the outputs differ",
           "`lin.weight.copy_(torch.from_numpy(kernel.T))`", _P + "test_gotcha_square_layout",
           above=1.0, below=1e-5),
    Gotcha("probability_clipping", "Probability clipping at 1e-7",
           "Keras's cross-entropy on probabilities (`from_logits=False`) clips them to "
           "[1e-7, 1 - 1e-7]: logits [20, 0, -5] with class 1 give 16.118 instead of 20.0 "
           "(and zero gradient)",
           "output logits; `from_logits=True` / `nn.CrossEntropyLoss` / "
           "`softmax_cross_entropy_with_logits_v2`", _P + "test_gotcha_probability_clipping",
           above=3.8, below=1e-5),
    Gotcha("logits_shortcut", "The TF backend's hidden logits shortcut",
           "on the TensorFlow backend a Keras loss given the output of a `softmax` "
           "activation silently uses the logits behind it (20.0 above), while the same "
           "probabilities as a plain tensor are clipped (16.118): two equal inputs, two "
           "losses",
           "never give probabilities to a loss: a linear output and `from_logits=True`",
           _P + "test_gotcha_logits_shortcut", above=3.8, below=1e-5),
    Gotcha("loss_reduction", "Loss reduction and the partial last batch",
           "100 samples in batches of 32 leave a last batch of 4. A port that sums the loss "
           "and divides lr by 32 matches the mean on full batches only. Softmax regression, "
           "1 epoch, torch sum with lr/32 vs Keras `fit`",
           "the mean everywhere (`tf.reduce_mean`, Keras's default, `nn.CrossEntropyLoss()`)",
           _P + "test_gotcha_loss_reduction", above=0.1, below=1e-6),
    Gotcha("regression_target", "The (N,) against (N, 1) regression target",
           "Keras's MSE reshapes y (N,) to the prediction's (N, 1); torch `mse_loss` and "
           "TF1 `reduce_mean(square(y - p))` broadcast to N x N (torch only warns). Loss "
           "value, 6 samples",
           "targets of shape (N, 1) everywhere (`y.reshape(-1, 1)`)",
           _P + "test_gotcha_regression_target", above=0.1, below=1e-6),
    Gotcha("dropout_streams", "Dropout random streams",
           "the frameworks draw different masks even from \"the same\" seed "
           "(`keras.utils.set_random_seed(0)`, `torch.manual_seed(0)`): an MLP 8 -> 16 -> 8 -> 3 "
           "with rate 0.5, logits of 32 samples in training mode, Keras vs torch",
           "precomputed masks (`zoo.specs.dropout_masks`) applied as h * mask / (1 - rate) "
           "in all three (`model((x, *masks))`, `model(x, masks=...)`, the TF1 mask "
           "placeholders)", _P + "test_gotcha_dropout_streams", above=1.0, below=1e-6),
    Gotcha("dropout_flags", "Dropout train/eval flags",
           "a torch module starts in train mode and `torch.no_grad()` does not stop dropout; "
           "a Keras model called directly is in inference mode. The MLP's logits, torch "
           "right after `build` vs Keras `model(x)`",
           "`model.eval()` in torch (and `training=True` only where Keras's `fit` sets it)",
           _P + "test_gotcha_dropout_flags", above=1.0, below=1e-6),
    Gotcha("keras_minimize", "Keras 3 optimizers have no `minimize`",
           "seed 004's `tf.optimizers.SGD(0.01).minimize(cost, var_list=[w])` raises (since "
           "TF 2.16 `tf.optimizers` is Keras 3)",
           "`GradientTape` + `apply_gradients`; one step then equals TF1's `minimize` and "
           "torch's `step()`", _P + "test_gotcha_keras_minimize", above=None, below=1e-7,
           raises="AttributeError: 'SGD' object has no attribute 'minimize'"),
    Gotcha("disable_eager", "`disable_eager_execution()` breaks Keras",
           "after `tf.compat.v1.disable_eager_execution()` the process's next Keras `fit` "
           "fails",
           "never call it: build TF1 graphs inside `with tf.Graph().as_default():` and "
           "`Session(graph=g)`; TF1 and Keras `fit` then run in one process and agree",
           _P + "test_gotcha_disable_eager", above=None, below=1e-6,
           raises="RuntimeError: `tf.data.Dataset` only supports Python-style iteration in "
                  "eager mode or within tf.function."),
    Gotcha("fit_shuffle", "`fit` shuffles by default",
           "`fit(X, y)` reorders the samples every epoch (`shuffle=True`). Softmax "
           "regression, 1 epoch, Keras default `fit` vs torch in order",
           "`fit(..., shuffle=False)` and one shared batch order "
           "(`zoo.data.batch_order`)", _P + "test_gotcha_fit_shuffle", above=0.1,
           below=1e-6),
    Gotcha("float32_parting", "Two correct ports part after many float32 steps",
           "every framework rounds differently in float32 (summation order, fused kernels), "
           "and an MLP amplifies it: a drift of 1e-6 can switch a ReLU for some sample, after "
           "which the runs go separate ways. The digits MLP, Adam lr 5e-3, 40 epochs (1,800 "
           "steps), shared dropout masks: torch in float32 against the float64 reference, the "
           "largest final weight difference (the test accuracies stay within two points)",
           "compare in float64 (`zoo compare --dtype float64`): equal computations agree to "
           "rounding there; in float32 compare the first epoch step by step and longer runs by "
           "their test metric, and let `zoo compare --diagnose` tell drift and ReLU kinks from "
           "a real difference", _P + "test_gotcha_float32_parting", above=0.05, below=1e-12),
    Gotcha("conv_layout", "Convolution kernel layout",
           "a Keras/TF kernel is (kh, kw, in, out), a torch weight (out, in, kh, kw). "
           "`kernel.reshape(out, in, kh, kw)` has the right shape and is accepted silently: a "
           "3x3 convolution of 3 -> 5 channels on 8x8 images, Keras vs torch outputs",
           "`weight = kernel.transpose(3, 2, 0, 1)` (the zoo's weight tables, "
           "`zoo.layers.Conv2D`)", _P + "test_gotcha_conv_layout", above=1.0, below=1e-5),
    Gotcha("flatten_order", "Flatten order after a convolution",
           "Keras and TF1 flatten NHWC feature maps in H, W, C order, torch flattens NCHW in "
           "C, H, W order: the same Dense kernel after a Flatten of 4x4x6 maps gives other "
           "outputs (float64)",
           "permute the kernel rows once, at the boundary: `kernel.reshape(H, W, C, "
           "out).transpose(2, 0, 1, 3).reshape(-1, out)` (the weight table of a Dense after a "
           "Flatten)", _P + "test_gotcha_flatten_order", above=1.0, below=1e-12),
    Gotcha("same_padding_stride", "'same' padding with stride 2",
           "TF pads an even input with stride 2 only at the bottom and right (total 1); "
           "torch's symmetric `padding=1` pads both sides and gives the same 4x4 shape with "
           "other numbers: 3x3 stride-2 convolution of 8x8 images, Keras vs torch",
           "`nn.ZeroPad2d((0, 1, 0, 1))` (left, right, top, bottom from "
           "`zoo.layers.same_padding`) and `padding=0`", _P + "test_gotcha_same_padding_stride",
           above=1.0, below=1e-5),
    Gotcha("torch_same_stride", "torch refuses `padding='same'` with a stride",
           "the obvious port of `Conv2D(..., strides=2, padding='same')` raises",
           "pad explicitly (`nn.ZeroPad2d`, above); outputs then equal Keras's",
           _P + "test_gotcha_torch_same_stride", above=None, below=1e-5,
           raises="ValueError: padding='same' is not supported for strided convolutions"),
    Gotcha("tf1_layers_conv2d", "`tf.compat.v1.layers.conv2d` under Keras 3",
           "TF1 code written with `tf.compat.v1.layers.conv2d` (or `dense`, "
           "`max_pooling2d`) raises on TensorFlow 2.16 and later",
           "`get_variable` for the kernel and bias and `tf.compat.v1.nn.conv2d` (the zoo's "
           "tf1_compat/layers.py); outputs then equal Keras's",
           _P + "test_gotcha_tf1_layers_conv2d", above=None, below=1e-5,
           raises="AttributeError: `conv2d` is not available with Keras 3."),
    Gotcha("bn_momentum", "BatchNorm momentum: two conventions",
           "Keras's `momentum=0.99` is the weight of the OLD moving value, torch's "
           "`momentum` the weight of the NEW batch value (default 0.1): copying 0.99 into "
           "`nn.BatchNorm2d` makes the running mean follow each batch. Moving mean after 5 "
           "batches, torch with 0.99 vs Keras with 0.99",
           "torch `momentum = 1 - keras_momentum` (`zoo.layers.BatchNorm.torch_momentum`)",
           _P + "test_gotcha_bn_momentum", above=0.1, below=1e-6),
    Gotcha("bn_epsilon", "BatchNorm epsilon defaults",
           "Keras's default epsilon is 1e-3, torch's 1e-5; on small activations (std 0.05) "
           "the training-mode outputs differ",
           "pass epsilon explicitly in every framework (the canonical layer always does)",
           _P + "test_gotcha_bn_epsilon", above=0.05, below=5e-5),
    Gotcha("bn_running_variance", "The running variance: unbiased in torch, biased in Keras",
           "torch updates its running variance with the unbiased batch variance (times m / (m "
           "- 1), m values per channel), Keras 3 and `tf.nn.moments` with the biased one; "
           "normalisation uses the biased one everywhere. 5 batches of 8 samples of flat "
           "features, momentum 0.99: moving variance, torch vs Keras",
           "correct torch's update after each step: `after + (after - m * before) * (c - 1)`, c "
           "= (m - 1) / m (`zoo.layers.corrected_moving_variance`; exact up to one rounding)",
           _P + "test_gotcha_bn_running_variance", above=1e-4, below=1e-6),
    Gotcha("bn_eval_mode", "Predicting in training mode",
           "a torch model not switched to `eval()` normalises a prediction batch with that "
           "batch's statistics (and moves its running statistics): the same trained layer, "
           "torch in train mode vs Keras's inference",
           "`model.eval()` before predicting (Keras: `predict`, or `model(x)` without "
           "`training=True`; TF1: leave the training flag unfed)",
           _P + "test_gotcha_bn_eval_mode", above=0.1, below=1e-5),
    Gotcha("tf1_update_ops", "TF1's moving statistics need `UPDATE_OPS`",
           "in TF1 the moving-statistics assigns are ops of their own: a train op that does "
           "not depend on `tf.GraphKeys.UPDATE_OPS` never runs them, and the moving mean and "
           "variance stay at their initial zeros and ones (max difference from Keras's after "
           "5 batches)",
           "`with tf.control_dependencies(tf.compat.v1.get_collection(UPDATE_OPS)): train = "
           "opt.minimize(loss)` (the zoo's tf1_compat/train.py)",
           _P + "test_gotcha_tf1_update_ops", above=0.1, below=1e-6),
    Gotcha("tf1_layers_batch_norm", "`tf.compat.v1.layers.batch_normalization` under Keras 3",
           "TF1 code written with `tf.compat.v1.layers.batch_normalization` raises on "
           "TensorFlow 2.16 and later",
           "`tf.nn.moments` + `tf.nn.batch_normalization` + assign ops in UPDATE_OPS (the "
           "zoo's tf1_compat/layers.py); outputs then equal Keras's",
           _P + "test_gotcha_tf1_layers_batch_norm", above=None, below=1e-5,
           raises="AttributeError: `batch_normalization` is not available with Keras 3."),
    Gotcha("fused_batch_norm", "TF's fused kernel returns the unbiased variance",
           "`tf.compat.v1.nn.fused_batch_norm(..., is_training=True)` (Keras 2's default "
           "path) normalises with the biased batch variance but returns the UNBIASED one for "
           "the moving update (8 values per channel: Bessel's factor 8/7); returned variance "
           "vs the biased one",
           "multiply its variance by (m - 1) / m for a biased update, or use `tf.nn.moments` "
           "(the zoo's tf1_compat/layers.py)",
           _P + "test_gotcha_fused_batch_norm", above=0.01, below=1e-6),
    Gotcha("sync_batch_norm", "Data-parallel BatchNorm normalises each shard alone",
           "under data parallelism every replica normalises with its own shard's statistics: "
           "a batch of 8 images split in 2 shards vs one process; and torch's "
           "`nn.SyncBatchNorm` refuses CPU tensors (\"SyncBatchNorm expected input tensor to "
           "be on GPU...\")",
           "synchronise the statistics: all-reduce the shards' sums for the global mean and "
           "variance (Keras `BatchNormalization(synchronized=True)`; on CPU torch the zoo's own "
           "synchronised module in torch_models/distributed.py)",
           _P + "test_gotcha_sync_batch_norm", above=0.05, below=1e-5),
    Gotcha("gru_gate_order", "GRU gate order",
           "Keras orders a GRU's gates z, r, h, torch r, z, n: a Keras GRU's kernels, "
           "transposed but not reordered, load into `nn.GRU` silently and compute another GRU",
           "swap the z and r blocks of the kernels, recurrent kernels and both bias rows (the "
           "weight table's `GateLayout`)", _P + "test_gotcha_gru_gate_order",
           above=0.05, below=1e-5),
    Gotcha("lstm_two_biases", "torch's LSTM trains two biases",
           "torch's `nn.LSTM` adds bias_ih and bias_hh, Keras has one bias; with both trained, "
           "their sum moves twice as far under SGD: the summed bias after one SGD step (lr "
           "0.1), torch vs Keras",
           "load the bias into bias_ih, zero bias_hh and freeze it (`requires_grad_(False)`); "
           "reading a torch model, sum the two", _P + "test_gotcha_lstm_two_biases",
           above=1e-3, below=1e-6),
    Gotcha("gru_reset_after", "GRU reset_after: Keras 3 and cuDNN against Keras 2",
           "Keras 3's (and torch's, and cuDNN's) GRU applies the reset gate after the recurrent "
           "matmul, r * (h U + b'), with two bias rows; Keras 2's original GRU before it, (r * "
           "h) U, with one: the same kernels (bias rows summed) give other outputs",
           "build the same variant on both sides (`GRU(reset_after=...)`; torch has only "
           "reset_after=True, the zoo's torch translation adds a small module for False)",
           _P + "test_gotcha_gru_reset_after", above=1e-3, below=1e-5),
    Gotcha("tf1_lstm_cell", "`tf.compat.v1.nn.rnn_cell` under Keras 3",
           "TF1 code written with `tf.compat.v1.nn.rnn_cell.LSTMCell` (or `GRUCell`) raises on "
           "TensorFlow 2.16 and later",
           "`get_variable` kernels and a `tf.scan` (or `tf.compat.v1.while_loop`) over time with "
           "the cell's equations (the zoo's tf1_compat/layers.py); outputs then equal Keras's",
           _P + "test_gotcha_tf1_lstm_cell", above=None, below=1e-5,
           raises="AttributeError: `LSTMCell` is not available with Keras 3."),
    Gotcha("tf1_lstm_gate_order", "TF1's LSTMCell: gates i, j, f, o and forget_bias",
           "TF1's `LSTMCell` keeps one kernel over [x, h] with gates i, j, f, o (j the "
           "candidate) and adds forget_bias=1.0 to f at run time; Keras keeps two kernels with "
           "gates i, f, c, o and the forget bias in its weights: Keras's numbers copied as they "
           "are (float64)",
           "reorder the gate blocks i, f, c, o -> i, c, f, o, stack kernel over recurrent "
           "kernel, and subtract 1 from the forget-gate bias", _P + "test_gotcha_tf1_lstm_gate_order",
           above=0.05, below=1e-12),
    Gotcha("batch_first", "torch's recurrent layers are time-major by default",
           "`nn.LSTM` reads (T, N, F) unless `batch_first=True`: a (N, T, F) batch runs "
           "silently, the batch read as time, with the expected output shape",
           "`nn.LSTM(..., batch_first=True)` (every recurrent translation of the zoo)",
           _P + "test_gotcha_batch_first", above=0.05, below=1e-5),
    Gotcha("recurrent_initialisers", "Recurrent default initialisers",
           "torch draws every `nn.LSTM`/`nn.GRU` tensor, biases included, from U(+-1/sqrt(u)) "
           "and `nn.Embedding` from N(0, 1); Keras starts the LSTM's forget-gate bias at one "
           "(`unit_forget_bias=True`), its recurrent kernel orthogonal, its input kernel "
           "glorot-uniform and embeddings in U(-0.05, 0.05): the forget-gate bias of two fresh "
           "LSTM(16) layers, mean Keras vs torch",
           "draw the initial weights once and load them into every framework "
           "(`zoo.specs.init_weights`, Keras's initialisers); outputs then agree",
           _P + "test_gotcha_recurrent_initialisers", above=0.5, below=1e-5),
    Gotcha("embedding_sparse_gradients", "Adam on an embedding's sparse gradient",
           "an embedding's gradient is one slice per looked-up id; Keras 3's Adam (and "
           "RMSprop, Adagrad) squares each slice before adding them, so a row looked up k times "
           "gets the sum of k squares in its second moment, not the square of the sum (torch "
           "and the dense formula). One Adam step (lr 0.1) with an id looked up twice; TF1's "
           "sparse RMSprop and momentum instead update only the slots of the rows in the batch",
           "hand the optimizer a dense gradient (`tf.convert_to_tensor(grad)`; the zoo's "
           "`ZooEmbedding` and TF1 translation do)", _P + "test_gotcha_embedding_sparse_gradients",
           above=0.01, below=5e-6),
    Gotcha("quadratic_cost_mse", "Seed 001's quadratic cost is not Keras's `mse`",
           "C = 1/(2n) sum ||y - a||^2 sums the squared error over the 10 outputs and halves "
           "it; `keras.losses.MeanSquaredError` averages over the outputs: the ratio of the "
           "two on 6 samples (C / 2 = 5 for 10 outputs, so the gradient, and the effective "
           "learning rate, are 5 times smaller)",
           "write the cost as it is: `0.5 * sum over outputs, mean over samples` (the zoo's "
           "\"quadratic\" loss in every framework)", _P + "test_gotcha_quadratic_cost_mse",
           above=4.0, below=1e-6),
    # Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1) against Keras 3: measured in a Keras 2
    # process (tests/keras2_probe.py), Keras 3 in the test's own
    Gotcha("keras2_fused_batch_norm", "Keras 2's BatchNormalization: the fused kernel's "
           "moving variance",
           "on 4-D float32 input Keras 2's `BatchNormalization()` picks TF's fused kernel "
           "(`fused=None` -> True), whose moving variance follows the UNBIASED batch variance; "
           "Keras 3's follows the biased one (both normalise with the biased one). 5 batches "
           "of 2x2x2x3 images (8 values per channel), momentum 0.99: moving variance, Keras 2 "
           "vs Keras 3",
           "Keras 2 `BatchNormalization(fused=False)` (`tf.nn.moments`, biased; the zoo's "
           "keras2_models); or keep the fused kernel and correct its update with "
           "`zoo.layers.corrected_moving_variance`", _P + "test_gotcha_keras2_fused_batch_norm",
           above=0.01, below=1e-6),
    Gotcha("keras2_bn_float64_momentum", "Keras 2's BatchNormalization rounds its decay to "
           "float32",
           "Keras 2 turns 1 - momentum into a tensor with `tf.convert_to_tensor`, float32 for a "
           "Python float (0.01 -> 0.0099999998), before casting it to a float64 layer's dtype; "
           "Keras 3 multiplies by the Python float. A float64 layer, 5 batches of 4x8x8x3, "
           "momentum 0.99: moving statistics, Keras 2 vs Keras 3",
           "float64 models get `momentum=np.float64(0.99)` (keras2_models.layers)",
           _P + "test_gotcha_keras2_bn_float64_momentum", above=1e-10, below=1e-14),
    Gotcha("keras2_lr_ignored", "Keras 2's optimizers ignore `lr=`",
           "since Keras 2.11 `tf.keras.optimizers.SGD(lr=0.5)` logs a warning and trains with "
           "the DEFAULT learning rate (0.01); the legacy optimizers (`tf.keras.optimizers."
           "legacy`, what Keras 2 code before 2.11 ran) honour `lr`, and Keras 3 raises "
           "(\"Argument(s) not recognized\"). One step of gradient 1: `SGD(lr=0.5)` vs "
           "`legacy.SGD(lr=0.5)`",
           "`learning_rate=` always (`zoo.optimizers.keras_kwargs`): Keras 2, its legacy "
           "optimizers and Keras 3 then take the same step", _P + "test_gotcha_keras2_lr_ignored",
           above=0.1, below=1e-7),
    Gotcha("keras2_decay", "Keras 2's time-based `decay=`",
           "Keras 2's legacy optimizers divide the lr by 1 + decay * iterations; Keras 2.11's "
           "new ones raise for `decay=`, and Keras 3's accept it, warn and IGNORE it. Seed "
           "quadratic, 100 steps: Keras 2 `legacy.SGD(0.1, decay=0.01)` vs Keras 3 "
           "`SGD(0.1, decay=0.01)`",
           "a schedule: `learning_rate=keras.optimizers.schedules.InverseTimeDecay(lr, "
           "decay_steps=1, decay_rate=decay)` (in Keras 2's new optimizers too)",
           _P + "test_gotcha_keras2_decay", above=0.01, below=1e-6),
    Gotcha("keras2_embedding_dedup", "Keras 2 sums an embedding's repeated ids, Keras 3 "
           "does not",
           "Keras 2's optimizers deduplicate a sparse gradient before the update (one slice "
           "per id, repeats summed), so Adam's second moment gets the square of the sum, as "
           "the dense formula; Keras 3's square each slice (gotcha above): a Keras 2 model "
           "with an Embedding trains otherwise in Keras 3. One Adam step (lr 0.1), id 1 "
           "looked up twice, Keras 3 vs Keras 2",
           "hand Keras 3's optimizer the dense gradient (`tf.convert_to_tensor(grad)`, the "
           "zoo's `ZooEmbedding`): it then equals Keras 2's step",
           _P + "test_gotcha_keras2_embedding_dedup", above=0.01, below=1e-6),
    Gotcha("keras2_gru_v1_default", "Keras 2's two GRU classes: reset_after False and True",
           "`tf.compat.v1.keras.layers.GRU` (Keras 2 code written for TF 1.x) defaults to "
           "reset_after=False, `tf.keras.layers.GRU` (TF 2.x and Keras 3) to True, with one "
           "bias row against two: Keras 3's weights (bias rows summed) in the v1 class give "
           "other outputs, Keras 2 vs Keras 3",
           "pass `reset_after=` explicitly on both sides (the zoo's translations do), or use "
           "the v2 class", _P + "test_gotcha_keras2_gru_v1_default", above=0.05, below=1e-5),
    # TF1 layer code as it was written (tf.compat.v1.layers, rnn_cell; TF_USE_LEGACY_KERAS=1):
    # measured in a process of its own (tests/tf1_layers_probe.py), Keras 3 and torch in the
    # test's own
    Gotcha("tf1_layers_defaults", "`tf.compat.v1.layers` defaults: Keras's, not torch's",
           "with TF_USE_LEGACY_KERAS=1 `tf.compat.v1.layers.dense` starts as Keras 3's Dense "
           "(glorot-uniform kernel, zero bias; unlike `get_variable`'s default, glorot for the "
           "bias too) and `batch_normalization` has Keras's momentum 0.99 and epsilon 1e-3; "
           "torch's `nn.Linear` draws a random bias (U(+-1/sqrt(in))) and `nn.BatchNorm2d` "
           "has momentum 0.1 (the other convention) and eps 1e-5. Fresh Dense(64 -> 10) "
           "biases, torch vs TF1",
           "load the same initial weights everywhere (`zoo.specs.init_weights`, assigned after "
           "the initializer in tf1_layers/model.py); outputs then agree",
           _P + "test_gotcha_tf1_layers_defaults", above=0.05, below=1e-5),
    Gotcha("tf1_layers_update_ops", "`tf.compat.v1.layers.batch_normalization` and "
           "UPDATE_OPS",
           "the layer's moving-statistics updates are ops in `tf.GraphKeys.UPDATE_OPS`: a "
           "train op that does not depend on them never moves the moving mean (0) and "
           "variance (1). And its default `fused=None` takes the fused kernel on 4-D float32 "
           "input, which updates with the unbiased variance. 5 batches of 8 4x4x3 images: "
           "moving statistics, no dependency vs Keras 3",
           "`with tf.control_dependencies(tf.compat.v1.get_collection(UPDATE_OPS)): train = "
           "opt.minimize(loss)` and `fused=False` (tf1_layers/train.py, tf1_layers/layers.py)",
           _P + "test_gotcha_tf1_layers_update_ops", above=0.1, below=1e-6),
    Gotcha("tf1_losses_float32", "`tf.compat.v1.losses` compute in float32",
           "`tf.compat.v1.losses.sparse_softmax_cross_entropy` (and every `tf.compat.v1.losses` "
           "function) casts logits, labels and weights to float32 and the loss back to the "
           "input's dtype: a float64 graph trains on a float32 loss (one training epoch of "
           "cnn_bn on digits in float64: losses 2.3e-7 from the float64 reference). Mean "
           "cross-entropy of 6 float64 logit rows vs the exact value",
           "`tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, "
           "logits=z))` (tf1_layers/model.py)", _P + "test_gotcha_tf1_losses_float32",
           above=1e-9, below=1e-15),
    Gotcha("tf1_layers_lstm_checkpoint", "Reading a TF1 `LSTMCell` checkpoint",
           "`rnn/lstm_cell/kernel` is ONE (features + units, 4 units) kernel over [x, h] with "
           "gates i, j, f, o, and the cell adds forget_bias=1.0 to f at run time: split at the "
           "input size and loaded into Keras's LSTM as it is, it computes another LSTM "
           "(float64, outputs vs the TF1 cell's)",
           "reorder i, j, f, o -> i, f, c, o and add 1 to the forget block of the bias (the "
           "weight table's tf1-layers column: `zoo convert OLD.ckpt NEW.keras` does it)",
           _P + "test_gotcha_tf1_layers_lstm_checkpoint", above=0.05, below=1e-12),
    Gotcha("tf1_layers_gru_cell", "TF1's `GRUCell` is Keras 2's reset_after=False GRU",
           "`rnn_cell.GRUCell` applies the reset gate before the recurrent matmul, keeps gates "
           "r, u (u = Keras's z) in `gates/kernel` and the candidate in `candidate/kernel`, both "
           "over [x, h], and starts its gates bias at ONE; taken as Keras 3's default GRU "
           "(reset_after=True, gates z, r, h) its variables compute another GRU (float64, "
           "outputs vs the TF1 cell's)",
           "`GRU(reset_after=False)` with the r and u blocks swapped (the tf1-layers column); "
           "the zoo's gru models (reset_after=True) have no TF1 cell and are refused",
           _P + "test_gotcha_tf1_layers_gru_cell", above=1e-3, below=1e-12),
)

_BY_KEY = {g.key: g for g in GOTCHAS}


def gotcha(key: str) -> Gotcha:
    """The gotcha named `key` (the tests take their bounds from it)."""
    return _BY_KEY[key]


@dataclass(frozen=True)
class Example:
    title: str
    path: str
    intro: str


EXAMPLES: tuple[Example, ...] = (
    Example("Seed 000: the TF1 session code", "docs/examples/seed_000_tf1.py",
            "The course's first TensorFlow program: minimise w² − 10w + 25 with a Session."),
    Example("Seed 004: the TF2 code as written fails on Keras 3",
            "docs/examples/seed_004_tf2_fails.py",
            "The seed's TF2 version of the same demo (with +10w, so the minimum is at −5)."),
    Example("Seed 004: the TF2 code ported", "docs/examples/seed_004_tf2_ported.py",
            "`minimize` replaced by a tape and `apply_gradients`: the seed's printed number."),
    Example("Seed 004: the PyTorch MLP", "docs/examples/seed_004_torch_mlp.py",
            "The seed's model and training step, then the zoo's three MLPs on its weights."),
    Example("Seed 002: the Keras Sequential code", "docs/examples/seed_002_keras.py",
            "The ice-cream regression of seed 002, then the zoo's three linear models."),
)

#: (section title, note, [(framework label, [(file, qualified name), ...])])
Part = tuple[str, list[tuple[str, str]]]
SECTIONS: tuple[tuple[str, str, tuple[Part, ...]], ...] = (
    ("Quadratic demo (seeds 000 and 004)",
     "Minimise J(w) = a·w² + b·w + c by gradient descent; all three agree within 1e-6 per step "
     "over 1000 steps "
     "(`tests/test_quadratic.py::test_seed_setting_frameworks_agree_every_step`).",
     (("TF1", [("tf1_compat/quadratic.py", "QuadraticGraph")]),
      ("TF2 / Keras 3", [("keras_models/quadratic.py", "_quadratic_loss"),
                         ("keras_models/quadratic.py", "_descend")]),
      ("PyTorch", [("torch_models/quadratic.py", "_descend"),
                   ("torch_models/quadratic.py", "minimize")]))),
    ("One translation per layer kind: Dense and Conv2D",
     "Every model is a list of canonical layers (`zoo/models.py`); each framework translates "
     "each layer kind once. Keras and TF1 keep the canonical layouts (kernel (in, out), "
     "HWIO, NHWC); torch's weights are converted by the weight tables of `zoo/layers.py`, and "
     "TF's asymmetric 'same' padding becomes an explicit `nn.ZeroPad2d`.",
     (("TF1", [("tf1_compat/layers.py", "dense"), ("tf1_compat/layers.py", "conv2d")]),
      ("TF2 / Keras 3", [("keras_models/layers.py", "_dense"),
                         ("keras_models/layers.py", "_conv2d")]),
      ("PyTorch", [("torch_models/layers.py", "_dense"),
                   ("torch_models/layers.py", "_conv2d")]))),
    ("BatchNorm and LayerNorm",
     "One canonical description (`zoo.layers.BatchNorm`: Keras's momentum convention, explicit "
     "epsilon, the biased batch variance for the moving update) translated into each "
     "framework: TF1 builds moments and assign ops in UPDATE_OPS under a training flag, Keras "
     "uses its own layers, torch gets momentum 1 - m and its unbiased running-variance update "
     "corrected after each step by `zoo.layers.corrected_moving_variance`.",
     (("TF1", [("tf1_compat/layers.py", "batch_norm"), ("tf1_compat/layers.py", "layer_norm")]),
      ("TF2 / Keras 3", [("keras_models/layers.py", "_batch_norm"),
                         ("keras_models/layers.py", "_layer_norm")]),
      ("PyTorch", [("torch_models/layers.py", "_batch_norm"),
                   ("torch_models/layers.py", "MovingVarianceCorrection"),
                   ("torch_models/layers.py", "_layer_norm")]))),
    ("Pooling, Flatten, Dropout and activations",
     "Pools are 'valid' everywhere; Flatten is H, W, C in Keras and TF1 and C, H, W in torch "
     "(the next Dense's torch layout permutes its rows, so activations are never permuted); "
     "dropout takes the shared masks in every framework.",
     (("TF1", [("tf1_compat/layers.py", "max_pool2d"), ("tf1_compat/layers.py", "flatten"),
               ("tf1_compat/layers.py", "dropout"), ("tf1_compat/layers.py", "activation")]),
      ("TF2 / Keras 3", [("keras_models/layers.py", "_max_pool2d"),
                         ("keras_models/layers.py", "_flatten"),
                         ("keras_models/layers.py", "_dropout"),
                         ("keras_models/layers.py", "shared_dropout")]),
      ("PyTorch", [("torch_models/layers.py", "_max_pool2d"),
                   ("torch_models/layers.py", "_flatten"),
                   ("torch_models/layers.py", "_dropout"),
                   ("torch_models/layers.py", "_activation")]))),
    ("Any model from its layer list",
     "One builder per framework for every model (softmax, svm, linear, logistic, mlp, cnn, "
     "lenet, nielsen); weights go in and out only through the weight tables.",
     (("TF1", [("tf1_compat/model.py", "build"), ("tf1_compat/model.py", "set_weights")]),
      ("TF2 / Keras 3", [("keras_models/model.py", "ZooModel"),
                         ("keras_models/model.py", "build"),
                         ("keras_models/model.py", "set_weights")]),
      ("PyTorch", [("torch_models/model.py", "Net"), ("torch_models/model.py", "build"),
                   ("torch_models/model.py", "set_weights")]))),
    ("Losses: the multiclass hinge (seed 003) and the quadratic cost (seed 001)",
     "Every loss takes the raw outputs (logits) and averages over the batch; the quadratic "
     "cost sums over the outputs (not Keras's `mse`).",
     (("TF1", [("tf1_compat/model.py", "_hinge"), ("tf1_compat/model.py", "_quadratic"),
               ("tf1_compat/model.py", "make_loss")]),
      ("TF2 / Keras 3", [("keras_models/model.py", "MulticlassHinge"),
                         ("keras_models/model.py", "QuadraticCost"),
                         ("keras_models/model.py", "make_loss")]),
      ("PyTorch", [("torch_models/model.py", "MulticlassHingeLoss"),
                   ("torch_models/model.py", "QuadraticCost"),
                   ("torch_models/model.py", "make_loss")]))),
)


def source_of(path: str, qualname: str, root: Path = ROOT) -> str:
    """The exact source text of the top-level function or class `qualname` in `path`
    (decorators included), read with `ast` (nothing is imported)."""
    text = (root / path).read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name == qualname:
            lines = text.splitlines()
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(lines[first - 1:node.end_lineno])
    raise KeyError(f"{path} has no top-level function or class {qualname!r}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _test_ref(test: str) -> str:
    return f"`{test}`"


def _num(x: float) -> str:
    """1e-06 -> 1e-6, 0.01 -> 0.01, 3.8 -> 3.8."""
    if x >= 1e-3:
        return f"{x:g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


_HEADER = """\
# Porting between TF1, TF2 / Keras 3 and PyTorch

<!-- Generated by scripts/gen_porting.py from zoo/porting.py, docs/examples/ and the
framework packages' source. Do not edit by hand: tests/test_porting.py fails when this file
differs from a fresh generation, and it executes every python block below. -->

Versions: TensorFlow 2.21 (Keras 3.15), PyTorch 2.13, NumPy 2.4. Every statement below is
backed by a test that runs the frameworks: a table row names the test that asserts that
the three sides give equal numbers; a gotcha names the test that first measures the
difference (it asserts the difference exceeds the bound given here) and then asserts that
the fix brings it below the second bound. The bounds in this document are the ones the
tests assert (they read them from `zoo/porting.py`).

Contents: [mapping table](#mapping-table) · [gotchas](#gotchas) ·
[the seeds' snippets, executed](#the-seeds-snippets-executed) ·
[the zoo's code side by side](#the-zoos-code-side-by-side)
"""


def _table() -> list[str]:
    out = ["## Mapping table", "",
           "| | TF1.x (`tf.compat.v1`) | TF2 / Keras 3 | PyTorch | what to watch | test (all "
           "sides, equal numbers) |",
           "|---|---|---|---|---|---|"]
    for r in ROWS:
        out.append("| " + " | ".join(_cell(c) for c in (
            f"**{r.topic}**", r.tf1, r.tf2, r.torch, r.watch, _test_ref(r.test))) + " |")
    return out + [""]


def _gotchas() -> list[str]:
    out = ["## Gotchas", "",
           "Each difference breaks equality between the frameworks. *Measured* is what the "
           "test asserts about the difference before the fix; *after the fix* is the bound it "
           "asserts once the fix is applied (largest absolute difference of weights, "
           "trajectories, logits or losses, float32).", "",
           "| difference | measured (test asserts) | fix | after the fix | test |",
           "|---|---|---|---|---|"]
    for g in GOTCHAS:
        measured = f"raises `` {g.raises} ``" if g.raises else f"> {_num(g.above)}"
        out.append("| " + " | ".join(_cell(c) for c in (
            f"**{g.title}**: {g.difference}", measured, g.fix, f"< {_num(g.below)}",
            _test_ref(g.test))) + " |")
    return out + [""]


def _examples(root: Path) -> list[str]:
    out = ["## The seeds' snippets, executed", "",
           "Each block is a file in `docs/examples/`, copied here by the generator and "
           "executed by `tests/test_porting.py` (its `assert`s are the checks).", ""]
    for ex in EXAMPLES:
        code = (root / ex.path).read_text(encoding="utf-8").rstrip("\n")
        out += [f"### {ex.title}", "", f"{ex.intro} (`{ex.path}`)", "", "```python", code,
                "```", ""]
    return out


def _sections(root: Path) -> list[str]:
    out = ["## The zoo's code side by side", "",
           "Cut out of the framework packages by the generator, so they cannot drift from the "
           "code that the parity tests run. Each block is executed by `tests/test_porting.py` "
           "in a copy of its module's namespace, which redefines the function or class.", ""]
    for title, note, parts in SECTIONS:
        out += [f"### {title}", "", note, ""]
        for label, items in parts:
            out += [f"#### {label}", ""]
            for path, name in items:
                out += [f"{SOURCE_MARK}{path}::{name} -->", "```python",
                        source_of(path, name, root), "```", ""]
    return out


def render(root: Path = ROOT) -> str:
    """The whole of docs/porting.md."""
    lines = [_HEADER, *_table(), *_gotchas(), *_examples(root), *_sections(root)]
    return "\n".join(lines).rstrip("\n") + "\n"
