"""Where runs happen: per loaded model version, a bounded pool of `instances` worker threads
(Triton's instance_group), a bounded queue, and optionally a dynamic batcher. The event loop only
parses, dispatches and answers; onnxruntime runs in the workers (it releases the GIL while it runs).

- Queue: at most `instances + max_queue` requests wait for or hold a worker; one more is refused
  at once with `Unavailable` (503 + Retry-After / UNAVAILABLE), never queued without bound.
- Inline lane: a model whose recent runs took under `INLINE_S` runs a small request (at most SMALL
  values per input) on the loop itself: a thread hop costs more than such a run (the article's
  models: ~10 us), and batching cannot share what dominates it (~100 us of HTTP work).
- Dynamic batching (`max_batch_size` > 1): concurrent requests whose inputs have the same dtypes
  and dims after the batch are concatenated into one run (up to `max_batch_size` rows) and the
  outputs split back by rows. A batch is dispatched as soon as a worker is free; it waits up to
  `max_queue_delay_us` for more rows only while requests are arriving concurrently (the previous
  batch held several) and it has fewer rows than the next preferred size, so a lone client never
  waits. Requests are validated before they join a batch; if a merged run still fails, each of its
  requests runs alone, so a bad request fails only itself. Each response goes back to its own
  request (an HTTP/1.1 connection carries one request at a time: order per connection holds).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve.engine.errors import Unavailable
from serve.inputs import SMALL

logger = logging.getLogger(__name__)

INLINE_S = 50e-6  # a model whose runs take less than this runs small requests on the loop


@dataclass(frozen=True)
class Limits:
    """How one model's runs are scheduled: the flags, with what they leave None taken from the
    model's Triton config.pbtxt (`triton_limits`), else the defaults below."""

    instances: int | None = None  # worker threads (Triton instance_group count); default 1
    max_queue: int = 256  # requests waiting beyond those running; more: 503
    max_batch_size: int | None = None  # dynamic batching: rows per merged run; 0 or 1: off (default)
    max_queue_delay_us: int | None = None  # wait at most this long to fill a batch (under concurrency)
    preferred_batch_sizes: tuple[int, ...] | None = None

    @property
    def batching(self) -> bool:
        return (self.max_batch_size or 0) > 1


def triton_limits(flags: Limits, config: Path) -> Limits:
    """`flags`, with the fields they leave None from a Triton `config.pbtxt` when there is one:
    instance_group count, and with a `dynamic_batching` block max_batch_size,
    max_queue_delay_microseconds and preferred_batch_size. An unreadable file is ignored (logged)."""
    values = {}
    if config.is_file() and None in (
        flags.instances,
        flags.max_batch_size,
        flags.max_queue_delay_us,
        flags.preferred_batch_sizes,
    ):
        try:
            from google.protobuf import text_format
            from tritonclient.grpc import model_config_pb2 as mc

            parsed = text_format.Parse(config.read_text(), mc.ModelConfig())
        except Exception as exc:  # a hand-edited file must not stop serving
            logger.warning("%s: not a Triton model config (%s); ignored", config.name, str(exc)[:200])
            parsed = None
        if parsed is not None:
            if parsed.instance_group:
                values["instances"] = max(1, sum(g.count or 1 for g in parsed.instance_group))
            if parsed.HasField("dynamic_batching") and parsed.max_batch_size > 1:
                batching = parsed.dynamic_batching
                values["max_batch_size"] = parsed.max_batch_size
                values["max_queue_delay_us"] = batching.max_queue_delay_microseconds
                values["preferred_batch_sizes"] = tuple(sorted(batching.preferred_batch_size))
    return Limits(
        instances=flags.instances or values.get("instances", 1),
        max_queue=flags.max_queue,
        max_batch_size=flags.max_batch_size
        if flags.max_batch_size is not None
        else values.get("max_batch_size", 0),
        max_queue_delay_us=flags.max_queue_delay_us
        if flags.max_queue_delay_us is not None
        else values.get("max_queue_delay_us", 0),
        preferred_batch_sizes=flags.preferred_batch_sizes
        if flags.preferred_batch_sizes is not None
        else values.get("preferred_batch_sizes", ()),
    )


@dataclass(slots=True)
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future


class Runner:
    """The scheduler of one loaded model version. `run(feeds)` -> the model's outputs."""

    def __init__(self, model: Any, limits: Limits, batch_stats: dict[int, list[int]]):
        self.model, self.limits, self.batch_stats = model, limits, batch_stats
        self.pool = ThreadPoolExecutor(limits.instances or 1, thread_name_prefix=f"run-{model.name}")
        self.busy = 0  # runs in the workers now
        self.pending = 0  # requests admitted and not answered
        self.cost = math.inf  # seconds of a recent run (inline lane)
        self.queue: deque[_Item] = deque()
        self.wakeup: asyncio.Event | None = None
        self.batcher: asyncio.Task | None = None
        self.concurrent = False  # the last batch held several requests
        self.capacity = (limits.instances or 1) + limits.max_queue

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.cancel()
        self.pool.shutdown(wait=False)

    def _admit(self) -> None:
        if self.pending >= self.capacity:
            raise Unavailable(
                f"model {self.model.name!r} is busy: {self.pending} requests queued or running "
                f"(--instances {self.limits.instances}, --max-queue {self.limits.max_queue}); retry shortly",
                retry_after=1,
            )

    async def run(
        self, fn: Callable[[dict], dict], feeds: dict[str, Any], rows: int
    ) -> dict[str, np.ndarray]:
        """Run `fn(feeds)` (the model's `run` or `run_exact`) on a worker, batched when possible."""
        self._admit()
        if self.cost < INLINE_S and _small(feeds):
            start = time.perf_counter()
            outputs = fn(feeds)
            self.cost = time.perf_counter() - start
            self._count(len(next(iter(outputs.values()))), self.cost)
            return outputs
        self.pending += 1
        try:
            key = _key(feeds) if self.limits.batching else None
            if key is None:
                return await self._alone(fn, feeds)
            return await self._batched(feeds, rows or len(next(iter(feeds.values()))), key)
        finally:
            self.pending -= 1

    async def _alone(self, fn: Callable[[dict], dict], feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        self.busy += 1
        try:
            outputs, seconds = await asyncio.get_running_loop().run_in_executor(self.pool, _timed, fn, feeds)
        finally:
            self.busy -= 1
        self.cost = seconds
        self._count(len(next(iter(outputs.values()))), seconds)
        return outputs

    def _count(self, rows: int, seconds: float) -> None:
        entry = self.batch_stats.get(rows)
        if entry is None:
            entry = self.batch_stats[rows] = [0, 0]
        entry[0] += 1
        entry[1] += int(seconds * 1e9)

    async def _batched(self, feeds: dict[str, np.ndarray], rows: int, key: tuple) -> dict[str, np.ndarray]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append(_Item(feeds, rows, key, future))
        if self.batcher is None or self.batcher.done():
            self.wakeup = asyncio.Event()
            self.batcher = asyncio.ensure_future(self._batch_loop())
        self.wakeup.set()
        return await future

    async def _batch_loop(self) -> None:
        limits, loop = self.limits, asyncio.get_running_loop()
        free = asyncio.Semaphore(limits.instances or 1)
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            await free.acquire()  # a worker is free: what has queued meanwhile forms the batch
            if self.concurrent and limits.max_queue_delay_us and self._rows() < self._target():
                deadline = loop.time() + limits.max_queue_delay_us / 1e6
                while self._rows() < self._target() and (left := deadline - loop.time()) > 0:
                    self.wakeup.clear()
                    try:
                        await asyncio.wait_for(self.wakeup.wait(), left)
                    except TimeoutError:
                        break
            batch = self._take()
            if not batch:
                free.release()
                continue
            self.concurrent = len(batch) > 1
            task = asyncio.ensure_future(self._execute(batch))
            task.add_done_callback(lambda _: free.release())

    def _rows(self) -> int:
        first = self.queue[0].key if self.queue else None
        return sum(i.rows for i in self.queue if i.key == first)

    def _target(self) -> int:
        rows, sizes = self._rows(), self.limits.preferred_batch_sizes
        at = bisect.bisect_right(sizes, rows)
        most = self.limits.max_batch_size or 1
        return min(sizes[at] if at < len(sizes) else most, most)

    def _take(self) -> list[_Item]:
        """The oldest request and every queued one that fits with it, up to max_batch_size rows."""
        first = self.queue.popleft()
        batch, rows, rest = [first], first.rows, deque()
        while self.queue:
            item = self.queue.popleft()
            if item.key == first.key and rows + item.rows <= (self.limits.max_batch_size or 1):
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self.queue = rest
        return [i for i in batch if not i.future.done()]  # a cancelled request does not run

    async def _execute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        self.busy += 1
        try:
            if len(batch) == 1:
                merged = batch[0].feeds
            else:
                merged = {n: np.concatenate([i.feeds[n] for i in batch]) for n in batch[0].feeds}
            try:
                outputs, seconds = await loop.run_in_executor(self.pool, _timed, self.model.run, merged)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0].future, exc=exc)
                    return
                for item in batch:  # isolate: each runs alone, so a bad request fails only itself
                    try:
                        out, seconds = await loop.run_in_executor(
                            self.pool, _timed, self.model.run, item.feeds
                        )
                        self._count(item.rows, seconds)
                        _settle(item.future, out)
                    except Exception as one:
                        _settle(item.future, exc=one)
                return
            self._count(sum(i.rows for i in batch), seconds)
            start = 0
            for item in batch:
                _settle(item.future, {n: o[start : start + item.rows] for n, o in outputs.items()})
                start += item.rows
        finally:
            self.busy -= 1


def _settle(future: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if not future.done():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _timed(fn: Callable[[dict], dict], feeds: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    out = fn(feeds)
    return out, time.perf_counter() - start


def _small(feeds: dict[str, Any]) -> bool:
    return all(type(arr) is np.ndarray and arr.size <= SMALL for arr in feeds.values())


def _key(feeds: dict[str, Any]) -> tuple | None:
    """What requests must share to be merged: each input's name, dtype and dims after the batch;
    None when an input is not an array yet (converted by the run: runs alone)."""
    key = []
    for name, arr in feeds.items():
        if type(arr) is not np.ndarray or arr.ndim == 0:
            return None
        key.append((name, arr.dtype, arr.shape[1:]))
    return tuple(sorted(key))


def runner_for(version: Any, limits: Limits) -> Runner:
    """The version's runner, made on its first request; its workers stop when the version is gone."""
    runner = version.runner
    if runner is None:
        runner = version.runner = Runner(version.model, limits, version.batch_stats)
        weakref.finalize(version, runner.close)
    return runner
