"""Dynamic micro-batching: concurrent requests scored in one forward pass.

Each request puts its images on a queue and waits. One worker takes what is queued,
keeps gathering for at most ``max_wait`` seconds or until ``max_batch`` images, scores
them all in one call on a worker thread (the event loop stays free to accept more),
and hands each request its own slice of the scores. Under load the batches grow, and
with them the throughput; a lone request waits ``max_wait`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Pending:
    images: np.ndarray
    done: asyncio.Future[np.ndarray] = field(repr=False)


class MicroBatcher:
    """Scores (N, C, H, W) uint8 images with ``score`` in batches of concurrent requests.

    ``max_batch`` 1 turns batching off: every request is scored alone.
    """

    def __init__(
        self,
        score: ScoreFn,
        max_batch: int = 64,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.score, self.max_batch, self.max_wait = score, max_batch, max_wait
        self.on_batch = on_batch  # told each pass's size (for /metrics)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        # A thread of its own: in the loop's shared pool a pass would queue behind the
        # decoding of every waiting upload, and the batches would starve.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ae-anomaly-score")

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(wait=True)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """The scores of ``images``, computed with whatever else is waiting."""
        pending = _Pending(images, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].images)
            if size < self.max_batch and self._queue.empty() and self.max_wait > 0:
                # Let requests arriving just now join (a plain sleep: a timed-out get()
                # could be cancelled holding an item).
                await asyncio.sleep(self.max_wait)
            while size < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += len(item.images)
            await self._score(batch)

    async def _score(self, batch: list[_Pending]) -> None:
        images = np.concatenate([item.images for item in batch])
        if self.on_batch is not None:
            self.on_batch(len(images))
        try:
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(self._thread, self.score, images)
        except Exception as exc:  # handed to every request of the batch
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        start = 0
        for item in batch:
            end = start + len(item.images)
            if not item.done.done():
                item.done.set_result(scores[start:end])
            start = end
