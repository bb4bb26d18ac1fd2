"""Coalescing concurrent requests into one model batch.

Each request's images wait in a queue; the model thread takes the first
request, then whatever else arrives within `max_wait_ms`, up to `max_batch`
images, and runs them as one batch. The model runs in its own thread (one
batch at a time), never on the event loop, so the server keeps answering
while a batch runs. A request with more images than `max_batch` runs alone,
in slices of `max_batch`.

Flip test-time augmentation is computed as `flowerkit predict` computes it:
the mean of the probabilities of the images and of their mirror images,
each from its own model call; plain and flipped requests share a batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from flowerkit.data.decode import flip_averaged

log = logging.getLogger("flowerkit.serve")


class Busy(Exception):
    """More images are waiting than the server accepts in its queue."""


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    images: int  # in the model batch this request ran in (a slice of max_batch, if larger)
    queue_ms: float  # from arrival to the start of its batch
    model_ms: float  # the batch's model time


@dataclasses.dataclass
class _Job:
    images: np.ndarray
    flip: bool
    future: asyncio.Future
    arrived: float


class Batcher:
    """`await batcher.predict(images, flip)` -> (probabilities, BatchInfo).

    Start it in the running event loop (`await start()`), `await stop()` at
    the end. `max_queue` images at most wait at once: beyond, `Busy`.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 1024):
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self._predict = predict
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.max_queue = max_queue
        self.waiting = 0  # images queued, not yet in a batch
        self.batches = 0
        self._queue: asyncio.Queue | None = None
        self._carry: _Job | None = None
        self._worker: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowerkit-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="flowerkit-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def run_in_model_thread(self, function, *args):
        """Runs `function` in the model's thread (warm-up, for one)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def predict(self, images: np.ndarray, flip: bool = False) -> tuple[np.ndarray, BatchInfo]:
        if self.waiting + len(images) > self.max_queue:
            raise Busy()
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(images)
        self._queue.put_nowait(_Job(images, flip, future, time.perf_counter()))
        return await future

    async def _next_batch(self) -> list[_Job]:
        first = self._carry or await self._queue.get()
        self._carry = None
        jobs, count = [first], len(first.images)
        deadline = time.perf_counter() + self.max_wait
        while count < self.max_batch:
            try:
                if self._queue.empty():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    job = await asyncio.wait_for(self._queue.get(), left)
                else:
                    job = self._queue.get_nowait()
            except (asyncio.TimeoutError, TimeoutError):
                break
            if count + len(job.images) > self.max_batch:
                self._carry = job  # starts the next batch
                break
            jobs.append(job)
            count += len(job.images)
        self.waiting -= count
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._next_batch()
            jobs = [job for job in jobs if not job.future.done()]  # clients that gave up
            if not jobs:
                continue
            started = time.perf_counter()
            try:
                probabilities = await self.run_in_model_thread(self._compute, jobs)
            except Exception as error:  # the model failed: every request of the batch gets a 500
                log.exception("the model failed on a batch of %d images", sum(len(j.images) for j in jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(ModelFailed(str(error)))
                continue
            self.batches += 1
            model_ms = (time.perf_counter() - started) * 1000
            count = sum(len(job.images) for job in jobs)
            position = 0
            for job in jobs:
                rows = probabilities[position : position + len(job.images)]
                position += len(job.images)
                if not job.future.done():
                    info = BatchInfo(min(count, self.max_batch), (started - job.arrived) * 1000, model_ms)
                    job.future.set_result((rows, info))

    def _run_sliced(self, images: np.ndarray) -> np.ndarray:
        parts = [self._predict(images[i : i + self.max_batch]) for i in range(0, len(images), self.max_batch)]
        return np.concatenate(parts)

    def _compute(self, jobs: list[_Job]) -> np.ndarray:
        images = np.concatenate([job.images for job in jobs])
        probabilities = self._run_sliced(images)
        flipped_rows = np.concatenate([
            np.full(len(job.images), job.flip) for job in jobs
        ])
        if flipped_rows.any():
            probabilities[flipped_rows] = flip_averaged(
                self._run_sliced, images[flipped_rows], probabilities[flipped_rows])
        return probabilities


class ModelFailed(Exception):
    """The model raised on a batch (logged with its traceback)."""
