"""Build the transfer-learning model a recipe describes.

    raw RGB 0-255 -> [augmentation] -> backbone preprocessing -> backbone
    (BatchNorm in inference mode) -> flatten | pooling -> [Dense relu]* -> [dropout]
    -> Dense(softmax)
"""

from __future__ import annotations

import contextlib

import keras

from flowerkit.backends.fastpaths import apply_fast_paths, use_micro_batches
from flowerkit.backends.policy import resolve_jit_compile, resolve_precision
from flowerkit.config.recipe import Recipe
from flowerkit.distribute.plan import Plan
from flowerkit.distribute.sharding import is_data_parallel, loss_reduction
from flowerkit.errors import FlowerkitError
from flowerkit.model.augment import build_layers
from flowerkit.model.backbones import PREPROCESSING_SCALES, get_backbone
from flowerkit.model.losses import crossentropy


def build_model(
    recipe: Recipe, num_classes: int | None = None, compile: bool = True,
    steps_per_epoch: int | None = None, plan: Plan | None = None,
) -> keras.Model:
    """Returns the (compiled) `keras.Model` for `recipe`.

    `steps_per_epoch` (batches per epoch) lets a "cosine"
    `learning_rate_schedule` decay over the recipe's epochs; without it the
    rate stays at `learning_rate` (see `compile_model`). `plan` is the
    device plan it trains under (`flowerkit.distribute.plan`; None: one
    device); build it inside `plan.scope()`.

    `num_classes` defaults to `len(recipe.class_names)`. Initial weights
    draw from Keras's global seed; `flowerkit.train` seeds it from the recipe.
    Building changes no process-wide state (the dtype policy is restored).
    """
    num_classes = num_classes or len(recipe.class_names)
    if num_classes < 2:
        raise FlowerkitError(
            "The model needs at least two classes: set recipe.class_names or pass num_classes."
        )
    with _dtype_policy(resolve_precision(recipe.precision)):
        model = _build_network(recipe, num_classes)
    _apply_recipe_fast_paths(model, recipe)
    if compile:
        compile_model(model, recipe, steps_per_epoch, plan=plan)
    return model


def _apply_recipe_fast_paths(model, recipe: Recipe) -> dict:
    return apply_fast_paths(model, recipe.depthwise_conv, recipe.torch_layers,
                            recipe.pointwise_conv, affine=recipe.affine_augmentation)


def fine_tuning_wrapper(model: keras.Model, recipe: Recipe) -> keras.Model:
    """`model` behind phase 2's stronger augmentation, in a training wrapper:
    the saved model keeps just its own (inactive at inference) layers. The
    new augmentation layers take this backend's fast path too
    (docs/fast-paths.md, `affine_augmentation`)."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    augmented = inputs
    for layer in build_layers(recipe.fine_tune_augmentation, recipe.seed + 1000):
        augmented = layer(augmented)
    wrapper = keras.Model(inputs, model(augmented), name="fine_tuning")
    _apply_recipe_fast_paths(wrapper, recipe)
    return wrapper


def _build_network(recipe: Recipe, num_classes: int) -> keras.Model:
    spec = get_backbone(recipe.backbone)
    inputs = keras.Input(shape=recipe.image_shape, name="image")
    x = inputs
    if recipe.augmentation:
        x = keras.Sequential(build_layers(recipe.augmentation, recipe.seed), name="augmentation")(x)
    scale = PREPROCESSING_SCALES[spec.preprocessing]
    if scale is not None:
        x = keras.layers.Rescaling(scale[0], offset=scale[1], name="preprocessing")(x)
    backbone = spec.load(recipe.image_shape, recipe.weights, **recipe.backbone_kwargs)
    if backbone is not None:
        backbone.trainable = recipe.trainable_backbone
        _freeze_batch_normalization(backbone)
        x = backbone(x, training=False)
    if recipe.head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if recipe.feature_dropout:  # in the head: after the cached features
        x = keras.layers.Dropout(recipe.feature_dropout, seed=recipe.seed + 1, name="feature_dropout")(x)
    for index, units in enumerate(recipe.head_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{index}")(x)
    if recipe.dropout:
        x = keras.layers.Dropout(recipe.dropout, seed=recipe.seed, name="dropout")(x)
    # float32 softmax even under mixed precision, for a stable loss.
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=f"flowerkit_{recipe.backbone}")


def _freeze_batch_normalization(layer) -> None:
    """BatchNorm in inference mode, also when fine-tuning: the statistics
    learnt on ImageNet stay put (the Keras transfer-learning guide). A
    non-trainable BatchNormalization layer always uses its moving statistics;
    `backbone(x, training=False)` alone is not enough, because a Functional
    model passes the outer call's `training` on to the layers inside it."""
    for sublayer in getattr(layer, "layers", []):
        if isinstance(sublayer, keras.layers.BatchNormalization):
            sublayer.trainable = False
        else:
            _freeze_batch_normalization(sublayer)


HEAD, FINE_TUNE = "head", "fine_tune"


def compile_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int | None = None,
                  class_weights=None, plan: Plan | None = None, phase: str = HEAD) -> None:
    """Compiles `model` for a phase of `recipe` under `plan` (None: one device).

    Phase 1 ("head"): the recipe's optimizer and learning rate. A "cosine"
    `learning_rate_schedule` decays the rate to 0 over `recipe.epochs *
    steps_per_epoch` steps, and so needs `steps_per_epoch`: without it (a
    model built before its data is known) the rate stays constant;
    `flowerkit.train` compiles phase 1 again once it knows the steps.
    Phase 2 ("fine_tune"): AdamW, linear warm-up to the peak learning rate,
    then cosine decay to zero, with the fine_tune_* label smoothing.
    `class_weights` weigh the loss per class in either phase."""
    if phase == FINE_TUNE:
        optimizer = _fine_tuning_optimizer(recipe, steps_per_epoch)
        label_smoothing, trains_backbone = recipe.fine_tune_label_smoothing, True
    else:
        # Keras knows the recipe's optimizer names ("adam", "sgd", ...).
        optimizer = keras.optimizers.get(
            {"class_name": recipe.optimizer, "config": {"learning_rate": _learning_rate(recipe, steps_per_epoch)}}
        )
        label_smoothing, trains_backbone = recipe.label_smoothing, recipe.trainable_backbone
    model.compile(
        optimizer=optimizer,
        loss=crossentropy(label_smoothing, loss_reduction(plan), class_weights),
        weighted_metrics=["accuracy"],  # zero-weight rows (padding, placeholders) do not count
        jit_compile=resolve_jit_compile(recipe.jit_compile),
    )
    use_micro_batches(model, recipe.micro_batch, trains_backbone=trains_backbone,
                      data_parallel=is_data_parallel(plan))


def _learning_rate(recipe: Recipe, steps_per_epoch: int | None):
    if recipe.learning_rate_schedule == "cosine" and steps_per_epoch:
        return keras.optimizers.schedules.CosineDecay(
            recipe.learning_rate, decay_steps=recipe.epochs * steps_per_epoch
        )
    return recipe.learning_rate


def _fine_tuning_optimizer(recipe: Recipe, steps_per_epoch: int):
    warmup = recipe.fine_tune_warmup_epochs * steps_per_epoch
    total = recipe.fine_tune_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else recipe.fine_tune_learning_rate,
        decay_steps=max(total - warmup, 1),
        warmup_target=recipe.fine_tune_learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.fine_tune_weight_decay)


def find_backbone(model: keras.Model):
    """The backbone inside a model made by `build_model`, or None."""
    nested = [
        layer for layer in model.layers
        if isinstance(layer, keras.Model) and layer.name != "augmentation"
    ]
    return nested[0] if nested else None


def split_at_features(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(feature extractor, head) sharing `model`'s layers: the extractor runs
    preprocessing, the backbone and (for a "gap" head) the pooling, without
    augmentation; the head maps those features to probabilities. Training
    the head trains `model`'s own head layers."""
    layers = model.layers[1:]  # a chain after the InputLayer (see _build_network)
    boundary = next((l for l in layers if l.name == "pool"), None) or find_backbone(model)
    if boundary is None:
        raise FlowerkitError("This model has no backbone: there are no features to cache.")
    cut = layers.index(boundary) + 1
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    x = inputs
    for layer in layers[:cut]:
        if layer.name != "augmentation":  # the cache holds each augmentation view
            x = layer(x)
    features = keras.Input(shape=x.shape[1:], name="features")
    y = features
    for layer in layers[cut:]:
        y = layer(y)
    return keras.Model(inputs, x, name="features"), keras.Model(features, y, name="head")


def unfreeze_backbone(model: keras.Model, recipe: Recipe) -> None:
    """Phase 2: the backbone's top `fine_tune_layers` layers (all for 0)
    train; BatchNorm stays frozen, in inference mode."""
    backbone = find_backbone(model)
    backbone.trainable = True
    if recipe.fine_tune_layers:
        for layer in backbone.layers[: -recipe.fine_tune_layers]:
            layer.trainable = False
    _freeze_batch_normalization(backbone)


@contextlib.contextmanager
def _dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
