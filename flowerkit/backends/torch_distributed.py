"""Data-parallel training on PyTorch, one process per device, launched by
torchrun (`torchrun --nproc_per_node=N -m flowerkit.train ...`).

Two mechanisms, chosen by what the installed Keras has:

- Keras's own (`KERAS_ENGINE`), where `keras.distribution` has a torch
  engine (feature-detected: `compat.keras_distribution_available()`; Keras
  3.16 development builds): a `keras.distribution.DataParallel` in the
  run's scope, under which the torch trainer wraps each model `fit` trains
  in DistributedDataParallel and sums the metric variables over processes.
  `DataParallelCallback` adds what Keras leaves out: the start of each
  `fit` agreed and broadcast (below), and a padded last batch's gradient
  scaled to its real rows.
- flowerkit's (`HAND_WRITTEN`), on Keras 3.15, which has no torch engine;
  wrapping the model in DistributedDataParallel does not work with its
  `fit` (train_step calls `self(x)`, not the wrapper; phase 2 unfreezes
  weights after wrapping). So `fit` runs unchanged in every process, on
  that process's rows of every global batch, and `DataParallelCallback`
  adds what makes the processes one run:

- weights and optimizer state broadcast from rank 0 when each `fit` starts;
- one flat all-reduce of the gradients before the Keras optimizer applies
  them, scaled so that the step is the one-device step on the whole global
  batch (also a last batch padded with zero-weight rows);
- the metric variables summed over processes whenever Keras reads its
  metrics, so every process logs, validates and decides (early stopping,
  plateaus) alike.

The Keras internals this relies on are `compat` entry 7.
"""

from __future__ import annotations

import contextlib
import datetime
import os

import keras
import numpy as np

from flowerkit import compat
from flowerkit.errors import FlowerkitError

# torch (an optional dependency: the PyTorch backend's) is imported where
# used, since `flowerkit.distribute.plan` imports this module on every backend.

ENGINE = "torch.distributed"
# Which mechanism synchronises the processes (recorded in metrics.json).
KERAS_ENGINE = "keras.distribution.DataParallel"
HAND_WRITTEN = "flowerkit all-reduce"
# A process whose peers stop answering (a hung host) fails after this long;
# a killed peer fails them at once (its sockets close).
TIMEOUT = datetime.timedelta(minutes=10)


def launched_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class DataParallel:
    """The process group of a torchrun job: this process's rank, the world
    size, the mechanism (module docstring) and the scope a run trains in."""

    def __init__(self):
        import torch
        import torch.distributed as dist

        # Keras's torch `initialize` does the same, but without a timeout.
        if not dist.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:  # before Keras places any tensor: "cuda" is then this device
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.distribution = None
        if compat.keras_distribution_available():
            # Each process feeds its own rows (ShardedBatches): Keras must not shard again.
            self.distribution = keras.distribution.DataParallel(
                devices=keras.distribution.list_devices(), auto_shard_dataset=False)

    @property
    def mechanism(self) -> str:
        return KERAS_ENGINE if self.distribution is not None else HAND_WRITTEN

    @contextlib.contextmanager
    def scope(self):
        """Keras's distribution, if used, is active; lost peers become one
        clear error, and the group ends with the run."""
        import torch.distributed as dist

        try:
            with self.distribution.scope() if self.distribution else contextlib.nullcontext():
                yield self
        except RuntimeError as error:
            if not _lost_peers(error):
                raise
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FlowerkitError(
                f"process {self.rank} of {self.world_size} lost its peers ({first_line}); rerun "
                "the same torchrun command to resume from the last finished epoch."
            ) from error
        finally:
            dist.destroy_process_group()

    def callbacks(self) -> list:
        return [DataParallelCallback(self.world_size, keras_engine=self.distribution is not None)]


def _lost_peers(error: RuntimeError) -> bool:
    """Whether a collective failed (gloo raises a plain RuntimeError)."""
    import torch.distributed as dist

    text = str(error).lower()
    return isinstance(error, dist.DistError) or any(
        sign in text for sign in ("gloo", "nccl", "connection closed", "timed out"))


class DataParallelCallback(keras.callbacks.Callback):
    """Makes every process's `fit` one data-parallel run (module docstring).
    keras_engine: Keras's DistributedDataParallel has averaged the gradients
    and sums the metrics; only a padded batch's gradient is rescaled."""

    def __init__(self, world_size: int, keras_engine: bool = False):
        super().__init__()
        self.world_size = world_size
        self.keras_engine = keras_engine
        self._synchronised = False

    def on_train_begin(self, logs=None):
        self._synchronised = False
        if self.keras_engine:
            self._restore = [compat.torch_around_gradient_apply(self.model, self._rescaled)]
            return
        self._restore = [
            compat.torch_around_gradient_apply(self.model, self._all_reduced),
            compat.torch_around_metrics_result(self.model, self._metrics_result),
        ]

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch begins after every on_train_begin, so after
        # BackupAndRestore has restored this process's backup.
        if not self._synchronised:
            starts = all_reduce_numpy(np.asarray([epoch, -epoch], np.float64), "max")
            if starts[0] != -starts[1]:
                raise FlowerkitError(
                    f"the processes resume from different epochs ({int(-starts[1])} to "
                    f"{int(starts[0])}); rerun with --overwrite to start over."
                )
            broadcast_variables([*self.model.variables, *self.model.optimizer.variables])
            self._synchronised = True

    def on_train_end(self, logs=None):
        for restore in self._restore:
            restore()

    def _all_reduced(self, gradients, data):
        """The gradients of the whole global batch's loss, on every process.

        Each process's loss is the sum of its rows' losses over its
        (padded) rows, so the global batch's loss gradient is the sum of
        theirs times rows / the real rows of the global batch (padding rows
        have sample weight 0)."""
        import torch
        import torch.distributed as dist

        rows, real = _rows_and_real_rows(data)
        present = [g for g in gradients if g is not None]
        flat = torch.cat([g.reshape(-1) for g in present] + [torch.tensor([real], device=present[0].device, dtype=present[0].dtype)])
        dist.all_reduce(flat)
        scale = rows / max(float(flat[-1]), 1.0)
        reduced, offset = [], 0
        for gradient in gradients:
            if gradient is None:
                reduced.append(None)
                continue
            reduced.append(flat[offset : offset + gradient.numel()].view_as(gradient) * scale)
            offset += gradient.numel()
        return reduced

    def _rescaled(self, gradients, data):
        """DistributedDataParallel's mean of the processes' gradients, each
        of its loss's mean over its (padded) rows, times the global batch's
        rows over its real rows: the one-device step of a padded batch too."""
        rows, real = _rows_and_real_rows(data)
        real_rows = all_reduce_numpy(np.asarray([real], np.float64))[0]
        global_rows = rows * self.world_size
        if real_rows == global_rows:
            return gradients
        scale = global_rows / max(real_rows, 1.0)
        return [None if gradient is None else gradient * scale for gradient in gradients]

    def _metrics_result(self, read_result):
        """Keras's metric results over every process's rows: the metric
        variables (sums and counts) summed over processes while read."""
        import torch
        import torch.distributed as dist

        variables = [v for metric in self.model.metrics for v in metric.variables]
        if not variables:
            return read_result()
        local = [v.value.detach().clone() for v in variables]
        flat = torch.cat([value.reshape(-1).to(torch.float64) for value in local])
        dist.all_reduce(flat)
        offset = 0
        for variable, value in zip(variables, local):
            variable.assign(flat[offset : offset + value.numel()].view_as(value).to(value.dtype))
            offset += value.numel()
        try:
            return {name: _plain(result) for name, result in read_result().items()}
        finally:
            for variable, value in zip(variables, local):
                variable.assign(value)


def _rows_and_real_rows(data) -> tuple[int, float]:
    """The rows of this process's batch, and those of non-zero weight."""
    import torch

    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    rows = keras.tree.flatten(x)[0].shape[0]
    real = float(rows if sample_weight is None else torch.count_nonzero(sample_weight).item())
    return rows, real


def _plain(value):
    """A metric result as a number that outlives the variables' restore."""
    array = keras.ops.convert_to_numpy(value)
    return float(array) if np.ndim(array) == 0 else array


def all_reduce_numpy(array: np.ndarray, op: str = "sum") -> np.ndarray:
    import torch
    import torch.distributed as dist

    operation = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    tensor = torch.as_tensor(array, device=_collective_device())
    dist.all_reduce(tensor, op=operation)
    return tensor.cpu().numpy()


def all_gather_numpy(array) -> np.ndarray:
    """Every process's rows of `array` (the same shape on each), in rank order."""
    import torch
    import torch.distributed as dist

    tensor = torch.as_tensor(np.ascontiguousarray(array), device=_collective_device())
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor)
    return torch.cat(gathered).cpu().numpy()


def broadcast_variables(variables, source: int = 0) -> None:
    """Rank `source`'s values of `variables` on every process, in one broadcast."""
    import torch
    import torch.distributed as dist

    values = [v.value.detach() for v in variables]
    if not values:
        return
    flat = torch.cat([value.reshape(-1).to(torch.float64) for value in values]).to(_collective_device())
    dist.broadcast(flat, src=source)
    offset = 0
    for variable, value in zip(variables, values):
        variable.assign(flat[offset : offset + value.numel()].view_as(value).to(value.dtype))
        offset += value.numel()


def _collective_device():
    import torch
    import torch.distributed as dist

    return "cuda" if dist.get_backend() == "nccl" else torch.device("cpu")
