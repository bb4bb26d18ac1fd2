"""flowerkit.backends.fastpaths: shifted depthwise convolutions for JAX on CPU.

Checks that the fast path computes what the stock layer computes (forward and
gradients), that a switched model trains and predicts the same, and that it
saves as plain Keras: a fresh interpreter that never imports flowerkit loads
it with safe_mode=True.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import keras
from tests.helpers import (
    assert_same_train_step,
    efficientnet_lite0_backbone,
    one_train_step,
    MOBILENET_V2_CUT,
    small_images,
    small_mobilenet_v2,
)

# The train-step tests below run MobileNetV2 cut after block 6 (7 depthwise
# layers, strides 1 and 2): the same layers, less for XLA to compile. The
# whole network's 17 switched layers: test_model_predicts_the_same.
CUT_DEPTHWISE_LAYERS = 7
from flowerkit import compat
from flowerkit.backends.fastpaths import apply_fast_paths, fast_path_record, is_matmul, is_shifted
from flowerkit.backends.geometry import shifted_depthwise_conv
from flowerkit.backends.policy import (
    AUTO_MICRO_BATCH,
    depthwise_implementation,
    micro_batch_size,
    pointwise_implementation,
)
from flowerkit.backends.torch_kernels import is_native

needs_jax = pytest.mark.backends("jax")  # jax.grad, or the auto policy's JAX+CPU case


# --- the policy -------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, device_kind, expected",
    [
        ("jax", "CPU", "shifted"),
        ("jax", "cpu", "shifted"),
        ("jax", "GPU", "stock"),
        ("jax", "TPU", "stock"),
        ("tensorflow", "CPU", "stock"),
        ("tensorflow", "GPU", "stock"),
        ("torch", "CPU", "stock"),
        ("torch", "GPU", "stock"),
    ],
)
def test_policy_auto(backend, device_kind, expected):
    assert depthwise_implementation(backend, device_kind) == expected
    assert depthwise_implementation(backend, device_kind, "auto") == expected


@pytest.mark.parametrize("setting", ["stock", "shifted"])
@pytest.mark.parametrize("backend, device_kind", [("jax", "CPU"), ("jax", "GPU"), ("torch", "CPU")])
def test_policy_explicit_setting_overrides(setting, backend, device_kind):
    assert depthwise_implementation(backend, device_kind, setting) == setting


@pytest.mark.parametrize("setting", ["fast", "", "Shifted", None])
def test_policy_bad_setting_raises(setting):
    with pytest.raises(ValueError, match="auto, shifted, stock"):
        depthwise_implementation("jax", "CPU", setting)


def test_record_describes_the_current_backend():
    record = fast_path_record()
    backend = keras.backend.backend()
    assert record["backend"] == backend and record["setting"] == "auto"
    assert record["device_kind"] in ("CPU", "GPU", "TPU")
    # The policy, written out: the shifted depthwise only on JAX with CPU devices, in a tested Keras.
    shifted = backend == "jax" and record["device_kind"] == "CPU" and compat.fast_paths_supported()
    assert record["depthwise_conv"] == ("shifted" if shifted else "stock")
    assert fast_path_record("stock")["depthwise_conv"] == "stock"
    assert fast_path_record("shifted")["depthwise_conv"] == (
        "shifted" if compat.fast_paths_supported() else "stock")


@pytest.mark.backends("tensorflow", "torch")
def test_apply_is_a_noop_off_jax():
    model = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.DepthwiseConv2D(3, padding="same")]
    )
    record = apply_fast_paths(model)
    assert record["depthwise_conv"] == "stock"
    assert record["shifted_layers"] == 0 and record["stock_layers"] == 1
    assert not is_shifted(model.layers[0])


# --- the computation ----------------------------------------------------------


def _stock_and_shifted_layers(kernel_size, strides, padding, depth_multiplier):
    layer = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=padding,
        depth_multiplier=depth_multiplier,
        activation="relu6",
        bias_initializer="random_normal",
    )
    layer.build((2, 11, 10, 3))
    return layer


@needs_jax
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_shifted_equals_stock_forward_and_gradients(kernel_size, strides, padding, depth_multiplier):
    import jax

    layer = _stock_and_shifted_layers(kernel_size, strides, padding, depth_multiplier)
    rng = np.random.default_rng(kernel_size * 100 + strides * 10 + depth_multiplier)
    x = rng.normal(size=(2, 11, 10, 3)).astype("float32")  # odd and even sizes
    kernel = layer.kernel.value
    bias = layer.bias.value

    def stock(x, kernel):
        y = keras.ops.depthwise_conv(x, kernel, strides=strides, padding=padding)
        return keras.activations.relu6(y + bias)

    def shifted(x, kernel):
        return keras.activations.relu6(shifted_depthwise_conv(x, kernel, strides, padding) + bias)

    # jit: op-by-op JAX would compile each of the kh*kw slices separately (slow).
    expected = jax.jit(stock)(x, kernel)
    actual = jax.jit(shifted)(x, kernel)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # The stock layer's own call (the one apply_fast_paths replaces) agrees too.
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)

    cotangent = rng.normal(size=expected.shape).astype("float32")

    def gradients(f):
        return jax.jit(jax.grad(lambda x, k: (f(x, k) * cotangent).sum(), argnums=(0, 1)))(x, kernel)

    (dx_stock, dk_stock), (dx_shifted, dk_shifted) = gradients(stock), gradients(shifted)
    assert float(np.abs(dk_stock).max()) > 0.1  # a real gradient, not zeros
    np.testing.assert_allclose(dx_shifted, dx_stock, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk_shifted, dk_stock, rtol=1e-5, atol=1e-5)


def test_switched_layer_equals_stock_layer_with_bias_and_activation():
    """Explicit "shifted" works on every backend (it is written in keras.ops)."""
    layer = keras.layers.DepthwiseConv2D(
        5, strides=2, padding="same", depth_multiplier=2, activation="relu",
        bias_initializer="random_normal",
    )
    model = keras.Sequential([keras.Input((9, 12, 4)), layer])
    x = np.random.default_rng(1).normal(size=(3, 9, 12, 4)).astype("float32")
    expected = model.predict(x, verbose=0)
    record = apply_fast_paths(model, "shifted")
    assert is_shifted(layer) and record["shifted_layers"] == 1
    assert model.predict_function is None  # retraced with the switched layer
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-5, atol=1e-5
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="padding must be"):
        shifted_depthwise_conv(np.zeros((1, 4, 4, 2)), np.zeros((3, 3, 2, 1)), 1, "causal")
    with pytest.raises(ValueError, match="channels"):
        shifted_depthwise_conv(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 2, 1)), 1, "same")
    with pytest.raises(ValueError, match="Keras model"):
        apply_fast_paths("not a model")


def test_unsupported_layers_stay_stock():
    model = keras.Sequential(
        [
            keras.Input((12, 12, 4)),
            keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same"),
            keras.layers.DepthwiseConv2D(3, padding="same"),
        ]
    )
    record = apply_fast_paths(model, "shifted")
    assert not is_shifted(model.layers[0]) and is_shifted(model.layers[1])
    assert (record["shifted_layers"], record["stock_layers"]) == (1, 1)
    record = apply_fast_paths(model, "stock")  # switches back
    assert not is_shifted(model.layers[1])
    assert record == {**record, "depthwise_conv": "stock", "shifted_layers": 0, "stock_layers": 2}


# --- whole models -------------------------------------------------------------


@needs_jax
def test_model_predicts_the_same():
    x, _ = small_images()
    # Pretrained: with random weights the features (and predictions) are ~1e-10.
    model = small_mobilenet_v2(pretrained=True)
    stock_predictions = model.predict_on_batch(x)
    record = apply_fast_paths(model)
    assert record["depthwise_conv"] == "shifted"
    assert record["shifted_layers"] == 17 and record["stock_layers"] == 0  # all of MobileNetV2's
    assert record["pointwise_conv"] == "matmul" and record["matmul_layers"] == 34  # its 1x1 convolutions
    scale = float(np.abs(stock_predictions).max())
    assert scale > 0.1
    np.testing.assert_allclose(model.predict_on_batch(x), stock_predictions, rtol=1e-4, atol=1e-5 * scale)


@needs_jax
def test_fit_step_is_the_same_with_the_fast_path():
    """One train_on_batch (the jitted stateless train step that fit uses) gives
    the same loss and the same weight updates.

    Pretrained weights: with random weights the un-normalised activations make
    ReLU6 clipping flip on float rounding, and jitted stock vs eager stock
    already differ by ~1% in the stem gradient. With real weights that
    difference was ~3e-5 of the largest gradient, and so was stock vs shifted,
    on the VMs of 2026-11-28/29; on the VM of 2026-11-30 (same jax 0.10.2,
    another CPU) stock and shifted differ by up to 2% of a layer's update
    norm (block_9_expand_BN's beta; its kernel by 0.8%, elementwise by 20%
    on small entries), the loss still by 4e-6. So each layer's update is
    compared as a whole, within 5%: a wrong shifted convolution moves the
    updates by far more (kernel gradients with their taps reversed: 144%)."""
    x, y = small_images()
    steps = []
    for setting in ("stock", "shifted"):
        model = small_mobilenet_v2(pretrained=True, cut_after=MOBILENET_V2_CUT)
        # 1x1 convolutions stock in both: their own test is below. (With both
        # paths on, the loss still agrees within 1e-5, but ReLU6 inputs sitting
        # at exactly 6.0 flip on float rounding and move single gradient
        # entries by a few percent of a layer's largest update.)
        record = apply_fast_paths(model, setting, "stock", "stock")
        assert record["shifted_layers"] == (CUT_DEPTHWISE_LAYERS if setting == "shifted" else 0)
        steps.append(one_train_step(model, x, y))
    assert_same_train_step(*steps, layer_rtol=0.05)


LOAD_SCRIPT = """
import json, sys
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[2], np.asarray(model.predict_on_batch(np.load(sys.argv[3]))))
def every(layer):  # public attributes only: this process has no flowerkit
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from every(inner)
print(json.dumps({"flowerkit_imported": any(m.startswith("flowerkit") for m in sys.modules),
                  "call_overrides": sum("call" in vars(l) for l in every(model))}))
"""


@pytest.mark.backends("jax", "torch")  # TensorFlow has no fast path to switch layers to
def test_saved_switched_model_loads_in_plain_keras(tmp_path):
    # In a fresh process of this backend; loading on the others is
    # tests/test_cross_backend.py's, from fixtures each backend saved.
    load_backend = keras.backend.backend()
    x, y = small_images()
    model = small_mobilenet_v2(pretrained=True, cut_after=MOBILENET_V2_CUT)
    record = apply_fast_paths(model)
    assert record["shifted_layers"] + record["native_layers"] > 0  # the auto policy switched layers
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)  # switched layers train through fit
    expected = model.predict_on_batch(x)
    assert float(np.abs(expected).max()) > 0.1
    path = tmp_path / "model.keras"
    model.save(path)

    # The archive names only stock Keras classes.
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    modules = {match for match in _values_of(config, "module")}
    assert modules and all(module.startswith("keras") for module in modules), modules

    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(path), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
        env={**_environment(), "KERAS_BACKEND": load_backend},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"flowerkit_imported": False, "call_overrides": 0}
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)

    # In this process too: the loaded and the cloned model are stock, predict the same.
    loaded = keras.saving.load_model(path, safe_mode=True)
    clone = keras.models.clone_model(loaded)
    clone.set_weights(loaded.get_weights())
    for other in (loaded, clone):
        assert not any(is_shifted(layer) or is_native(layer) for layer in compat.all_layers(other))
        np.testing.assert_allclose(other.predict_on_batch(x), expected, rtol=1e-4, atol=1e-5)


def _values_of(tree, key):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _values_of(v, key)
    elif isinstance(tree, list):
        for item in tree:
            yield from _values_of(item, key)


def _environment():
    import os

    # No flowerkit on the path: the child must not be able to import it.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _mobilenet_v1():
    return keras.applications.MobileNet(
        alpha=0.25, depth_multiplier=2, input_shape=(64, 64, 3), weights=None, include_top=False
    )


def _efficientnet_v2_b0():
    return keras.applications.EfficientNetV2B0(
        input_shape=(64, 64, 3), weights=None, include_top=False, include_preprocessing=False
    )


def _efficientnet_lite0():
    return efficientnet_lite0_backbone(load_weights=False)


@needs_jax
@pytest.mark.parametrize(
    "build, depthwise_layers",
    [(_mobilenet_v1, 13), (_efficientnet_v2_b0, 16), (_efficientnet_lite0, 16)],
    ids=["MobileNet-dm2", "EfficientNetV2B0", "keras-hub-EfficientNet-Lite0"],
)
def test_every_backbone_is_switched_and_unchanged(build, depthwise_layers):
    import jax  # the JAX backend's own: not installed in every test environment

    keras.utils.set_random_seed(0)
    backbone = build()
    found = [l for l in compat.all_layers(backbone) if isinstance(l, keras.layers.DepthwiseConv2D)]
    assert len(found) == depthwise_layers
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 64, 64, 3)).astype("float32")

    def forward():  # jitted, as fit and predict run it (and 5x faster than eager on CPU)
        return np.asarray(jax.jit(lambda images: backbone(images, training=False))(x))

    expected = forward()
    record = apply_fast_paths(backbone)
    assert (record["shifted_layers"], record["stock_layers"]) == (depthwise_layers, 0)
    assert all(is_shifted(layer) for layer in found)
    actual = forward()
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# --- 1x1 convolutions as matrix products (JAX on CPU) ----------------------------


@pytest.mark.parametrize(
    "backend, device_kind, setting, expected",
    [
        ("jax", "CPU", "auto", "matmul"),
        ("jax", "GPU", "auto", "stock"),
        ("tensorflow", "CPU", "auto", "stock"),
        ("torch", "CPU", "auto", "stock"),
        ("torch", "CPU", "matmul", "matmul"),
        ("jax", "CPU", "stock", "stock"),
    ],
)
def test_pointwise_policy(backend, device_kind, setting, expected):
    assert pointwise_implementation(backend, device_kind, setting) == expected
    with pytest.raises(ValueError, match="auto, matmul, stock"):
        pointwise_implementation(backend, device_kind, "dot")


def test_pointwise_matmul_equals_stock_forward_and_gradient():
    """Explicit "matmul" works on every backend (it is written in keras.ops);
    the gradient is checked through a train step."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 9, 8, 5)).astype("float32")
    y = np.arange(4) % 2
    results = []
    for setting in ("stock", "matmul"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((9, 8, 5)),
            keras.layers.Conv2D(6, 1, activation="relu6", bias_initializer="random_normal"),
            keras.layers.Conv2D(6, 3, padding="same"),  # not 1x1: stays stock
            keras.layers.Conv2D(4, 1, strides=2, use_bias=False),  # strided: stays stock
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ])
        record = apply_fast_paths(model, "stock", "stock", setting)
        assert record["matmul_layers"] == (1 if setting == "matmul" else 0)
        assert [is_matmul(layer) for layer in model.layers[:3]] == [setting == "matmul", False, False]
        predictions = keras.ops.convert_to_numpy(model(x))
        before = [np.asarray(w) for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = float(model.train_on_batch(x, y))
        results.append((predictions, loss, [np.asarray(w) - b for w, b in zip(model.trainable_weights, before)]))
    (p0, l0, u0), (p1, l1, u1) = results
    assert float(np.abs(p0).max()) > 0.1
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    assert float(np.abs(u0[0]).max()) > 1e-4  # the 1x1 kernel moved
    for stock_update, matmul_update in zip(u0, u1):
        np.testing.assert_allclose(matmul_update, stock_update, rtol=1e-4, atol=1e-6)


# --- the hand-written JAX gradients (flowerkit.backends.jax_kernels) ---------------------


@needs_jax
def test_jax_gradients_keep_bfloat16_and_match_float32():
    """Under mixed_bfloat16 the custom VJPs get bfloat16 tensors: the gradients
    come back in the dtypes of their primals and agree with the float32
    computation to bfloat16 precision."""
    import jax
    import jax.numpy as jnp

    from flowerkit.backends import jax_kernels as fastpath_jax

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 9, 8, 6)).astype("float32")
    kernel = rng.normal(size=(3, 3, 6)).astype("float32")
    weights = rng.normal(size=(6, 4)).astype("float32")
    pads = ((1, 1), (0, 1))  # "same" at stride 2 on 9x8

    def loss(x, kernel, weights):
        y = fastpath_jax.depthwise_conv(x, kernel, (2, 2), pads)
        return jnp.sum(fastpath_jax.pointwise_matmul(y, weights).astype("float32") ** 2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    expected = grad(x, kernel, weights)
    actual = grad(*(jnp.asarray(a, jnp.bfloat16) for a in (x, kernel, weights)))
    for e, a in zip(expected, actual):
        assert a.dtype == jnp.bfloat16 and a.shape == e.shape
        scale = float(np.abs(e).max())
        assert scale > 1.0
        np.testing.assert_allclose(np.asarray(a, "float32"), e, atol=0.05 * scale)


@needs_jax
def test_mixed_precision_fast_paths_stay_as_close_to_float32_as_stock():
    """Under mixed_bfloat16 the fast paths round differently from the stock
    layers (bfloat16 multiply-adds against float32-accumulating kernels), so
    the check is against float32: the fast paths' logits are no further from
    it than the stock bfloat16 layers' (x2), and a train step gives a finite loss
    and moves the weights."""
    x, y = small_images()
    float32_logits = small_mobilenet_v2(pretrained=True, cut_after=MOBILENET_V2_CUT).predict_on_batch(x)
    deviations = {}
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for settings in (("stock", "stock", "stock"), ("shifted", "stock", "matmul")):
            model = small_mobilenet_v2(pretrained=True, cut_after=MOBILENET_V2_CUT)
            record = apply_fast_paths(model, *settings)
            assert record["shifted_layers"] == (CUT_DEPTHWISE_LAYERS if settings[0] == "shifted" else 0)
            logits = np.asarray(model.predict_on_batch(x), "float32")
            deviations[settings[0]] = float(np.abs(logits - float32_logits).max())
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = [np.asarray(w, "float32") for w in model.trainable_weights]
        assert np.isfinite(float(model.train_on_batch(x, y)))
        moved = max(float(np.abs(np.asarray(w, "float32") - b).max())
                    for w, b in zip(model.trainable_weights, before))
        assert moved > 1e-4
    finally:
        keras.mixed_precision.set_global_policy("float32")
    scale = float(np.abs(float32_logits).max())
    assert deviations["stock"] < 0.1 * scale  # bfloat16 is close, not equal
    assert deviations["shifted"] <= 2 * deviations["stock"] + 1e-3 * scale, deviations


# --- micro-batched train steps (JAX) ------------------------------------------


@pytest.mark.parametrize(
    "backend, device_kind, trains_backbone, data_parallel, expected",
    [
        ("jax", "CPU", True, False, AUTO_MICRO_BATCH),
        ("jax", "CPU", False, False, 0),  # a frozen backbone: tiny steps on features
        ("jax", "CPU", True, True, 0),  # data-parallel: per-device batches already small
        ("jax", "GPU", True, False, 0),
        ("jax", "TPU", True, False, 0),
        ("tensorflow", "CPU", True, False, 0),
        ("torch", "CPU", True, False, 0),
    ],
)
def test_micro_batch_policy_auto(backend, device_kind, trains_backbone, data_parallel, expected):
    assert micro_batch_size(backend, device_kind, "auto", trains_backbone, data_parallel) == expected


def test_micro_batch_explicit_settings():
    assert micro_batch_size("jax", "GPU", 4) == 4
    assert micro_batch_size("jax", "CPU", 0) == 0
    assert micro_batch_size("torch", "CPU", 0) == 0
    with pytest.raises(ValueError, match="micro_batch=4 is a JAX train step; on torch"):
        micro_batch_size("torch", "CPU", 4)
    with pytest.raises(ValueError, match="runs on one device"):
        micro_batch_size("jax", "CPU", 4, data_parallel=True)
    for bad in (-1, True, "8", 2.0):
        with pytest.raises(ValueError, match="Unknown micro_batch setting"):
            micro_batch_size("jax", "CPU", bad)


@needs_jax
def test_micro_batched_step_is_the_batch_step():
    """Two and four micro-batches give the whole batch's loss and update,
    zero-weight rows included; a batch the size does not divide (6 rows
    over 4) takes Keras's own step, and gives the same."""
    x, y = small_images(count=8)
    weights = np.array([1, 1, 0, 1, 1, 0, 1, 1], "float32")
    reference = one_train_step(_frozen_batch_norm(), x, y, weights)
    for micro_batch in (2, 4):
        candidate = one_train_step(_frozen_batch_norm(), x, y, weights, micro_batch)
        assert_same_train_step(reference, candidate)
    reference = one_train_step(_frozen_batch_norm(), x[:6], y[:6])
    candidate = one_train_step(_frozen_batch_norm(), x[:6], y[:6], micro_batch=4)
    assert_same_train_step(reference, candidate)


def _frozen_batch_norm():
    """small_mobilenet_v2 with BatchNorm in inference mode, as flowerkit
    fine-tunes (the rest trains)."""
    model = small_mobilenet_v2(pretrained=True, cut_after=MOBILENET_V2_CUT)
    for layer in compat.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


@needs_jax
def test_batch_statistics_refuse_micro_batches():
    """A BatchNormalization layer that trains normalises over its batch:
    'auto' keeps Keras's step, a forced size is an error."""
    from flowerkit.backends.fastpaths import use_micro_batches

    model = small_mobilenet_v2()
    model.compile(optimizer="sgd", loss="mse")
    assert use_micro_batches(model, "auto") == 0 and "train_step" not in vars(model)
    with pytest.raises(ValueError, match="BatchNormalization layers that train"):
        use_micro_batches(model, 4)


@needs_jax
def test_fine_tuning_models_train_in_micro_batches_on_jax_cpu():
    """build_model gives a model whose backbone trains the micro-batched
    step (auto, JAX with CPU devices) and a frozen one Keras's; `fit` runs it
    and the saved model is plain Keras."""
    import flowerkit

    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(
        weights=None, image_size=32, class_names=("a", "b", "c"), head_units=(), dropout=0.0
    )
    assert "train_step" not in vars(flowerkit.build_model(recipe))
    model = flowerkit.build_model(recipe.replace(trainable_backbone=True))
    assert "train_step" in vars(model)
    x = np.random.default_rng(0).uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(24) % 3]
    # Batches of 16 and 8 rows: micro-batched when AUTO_MICRO_BATCH divides them.
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert "train_step" not in vars(keras.models.clone_model(model))
