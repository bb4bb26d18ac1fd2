"""Ready-made recipes, as plain data: each preset is the set of `Recipe`
fields that differ from the defaults (see `flowerkit.recipe.Recipe`)."""

PRESETS: dict[str, dict] = {
    # Exactly the codelab notebook: frozen full-width MobileNetV2, Flatten,
    # Dense(5, softmax), Adam 1e-3, batch 64, 10 epochs, 19% validation.
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
    # MobileNetV2 alpha 0.35 with the ImageNet weights that ship with the
    # offline cache (trained at 224), run at 288: a network trained on random
    # crops sees objects larger than a centre crop shows them at the training
    # size, so it does better on photos shown a little larger ("FixRes",
    # Touvron et al. 2019). Features of the photos alone, without their
    # mirror images: the cache then costs one forward pass, and the mirror
    # view's pass bought less than the resolution does. TensorFlow, final
    # validation accuracy over the same eight splits (seeds 42, 1-7):
    # 288 px one view 0.912 (seed 42: 0.913), 288 px with mirror images
    # 0.911, 224 px with mirror images 0.905 (the benchmark's seed 42:
    # 0.900), 256 px with mirror images 0.904 (four splits). Seed 42, 288 px
    # one view on JAX 0.916 and PyTorch 0.909 (means over four splits 0.912
    # and 0.911).
    # Pooled features generalise better than Flatten on this narrower
    # backbone; a hidden layer with dropout 0.5 and label smoothing adds ~1
    # point over a linear head on frozen features. With the features cached
    # an epoch takes well under a second, so the head trains longer and
    # slower: 512 units, 30 epochs at 5e-4 averaged 0.907 over eight splits
    # (224 px, JAX), against 0.898 for 256 units, 10 epochs at 1e-3.
    # Tried and not adopted (224 px, within the splits' noise): dropout 0.2
    # on the features (`feature_dropout`), +0.2-0.4 points on average, and a
    # cosine decay of the head's rate (`learning_rate_schedule="cosine"`),
    # +0.0-0.2 points on average, each losing photos on some backend's seed 42.
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
    # EfficientNet-Lite0 through keras-hub (preset name or a local preset
    # folder), at 288 like `mobilenet_v2_035` and for the same reason, on the
    # photos alone: TensorFlow, seeds 42, 1-3, 0.922, 0.921, 0.916, 0.916
    # (the benchmark's seed 42 at 224 px with mirror images: 0.913-0.919).
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
# augmentation and label smoothing (see Recipe.fine_tune_*).
_FINE_TUNING = dict(
    epochs=5,
    fine_tune_epochs=8,
    fine_tune_warmup_epochs=1,
    fine_tune_augmentation=("flip", "zoom:0.15", "rotate:0.05", "contrast:0.2"),
    fine_tune_label_smoothing=0.1,
    fine_tune_weight_decay=0.05,
)
# The fine-tuned presets keep the linear head (dropout 0.2, 1e-3) they were measured with.
_LINEAR_HEAD = dict(head_units=(), dropout=0.2, label_smoothing=0.0, learning_rate=1e-3)
# MobileNetV2 0.35 fine-tunes at 224 with mirror images in phase 1, as measured.
PRESETS["mobilenet_v2_035_finetune"] = dict(
    PRESETS["mobilenet_v2_035"], **_LINEAR_HEAD, **_FINE_TUNING, fine_tune_learning_rate=3e-4,
    image_size=224, augmentation=("flip",),
)
# EfficientNet-Lite0 fine-tunes at 288 px, above its native 224. In the
# benchmark (seed 42, 629 validation photos) 256 px ended at 0.952 on
# TensorFlow, 0.959 on JAX and 0.949 on PyTorch; 288 px at 0.954, 0.957 and
# 0.960, every backend past 95%, for 1.2-1.3x the time. (224 px: 0.946.)
PRESETS["efficientnet_lite0_finetune"] = dict(
    PRESETS["efficientnet_lite0"], **_LINEAR_HEAD,
    **dict(_FINE_TUNING, fine_tune_epochs=10), image_size=288, fine_tune_learning_rate=3e-4,
    augmentation=("flip",),  # phase 1 with mirror images, as measured
)

