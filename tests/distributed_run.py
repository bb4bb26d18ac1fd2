"""One `flowerkit.train` run, for tests/test_distribution.py, in a fresh
process (device flags must be set before the backend starts):

    python tests/distributed_run.py SOURCE OUTPUT RESULT_JSON '{"distribution": ...}'

Optional environment: FLOWERKIT_TEST_CPU_DEVICES (virtual CPU devices, JAX
and TensorFlow), FLOWERKIT_TEST_PRESET (default "dense"). Writes the losses
of every training step, the history and the metrics to RESULT_JSON (its
"{rank}" replaced by the torchrun RANK, under torchrun), with the trained
weights beside it (.npz) when RESULT_JSON names a rank.
"""

import json
import os
import sys
from pathlib import Path

DEVICES = int(os.environ.get("FLOWERKIT_TEST_CPU_DEVICES", "1"))
if DEVICES > 1:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    )
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import flowerkit  # noqa: E402


class StepLosses(keras.callbacks.Callback):
    """Keras logs each epoch's running mean of the loss, weighted by the rows
    of each batch; `losses` recovers each step's own loss from it."""

    def __init__(self):
        super().__init__()
        self.running = []  # per epoch: the running mean after each step

    def on_epoch_begin(self, epoch, logs=None):
        self.running.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.running[-1].append(float(logs["loss"]))

    def losses(self, images: int, batch_size: int, padded: bool) -> list[float]:
        """padded: every batch counted as full (data-parallel JAX and PyTorch
        pad the last)."""
        losses = []
        for means in self.running:
            rows = [batch_size] * len(means)
            if not padded and images % batch_size:
                rows[-1] = images % batch_size
            seen, total = 0, 0.0
            for mean, count in zip(means, rows):
                losses.append((mean * (seen + count) - total) / count)
                seen, total = seen + count, mean * (seen + count)
        return losses


def logical_cpus_for_tensorflow(count):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def main():
    source, output, result_path, changes = sys.argv[1:5]
    rank_named = "{rank}" in result_path
    result_path = result_path.replace("{rank}", os.environ.get("RANK", "0"))
    if keras.backend.backend() == "tensorflow" and DEVICES > 1:
        logical_cpus_for_tensorflow(DEVICES)
    base = dict(image_size=32, head_units=(16,), batch_size=8, epochs=2, class_names=())
    preset = os.environ.get("FLOWERKIT_TEST_PRESET", "dense")
    if preset != "dense":
        base = dict(image_size=32, backbone_kwargs={"alpha": 0.35}, weights=None, head="gap",
                    batch_size=8, epochs=1, fine_tune_epochs=1, dropout=0.0,
                    fine_tune_augmentation=())
    recipe = flowerkit.get_preset(preset).replace(**{**base, **json.loads(changes)})
    steps = StepLosses()
    result = flowerkit.train(recipe, source=source, output_dir=output if output != "-" else None,
                             verbose=0, callbacks=[steps])
    padded = result.metrics["strategy"] in ("keras.distribution.DataParallel", "torch.distributed")
    step_losses = steps.losses(result.metrics["train_images"], recipe.batch_size, padded)
    Path(result_path).write_text(json.dumps({
        "step_losses": step_losses, "running": steps.running,
        "history": result.history,
        "metrics": {k: v for k, v in result.metrics.items() if k != "validation_report"},
        "output_dir": str(result.output_dir) if result.output_dir else None,
    }))
    if rank_named:  # for comparing the processes' weights
        weights = [keras.ops.convert_to_numpy(v) for v in result.model.weights]
        np.savez(Path(result_path).with_suffix(".npz"), *weights)


if __name__ == "__main__":
    main()
