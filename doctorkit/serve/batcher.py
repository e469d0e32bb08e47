"""Dynamic batching: requests for one model that arrive together run as ONE generate() call.

Why hand-written and not transformers' continuous batching (`generate_batch` / `transformers serve`, 5.23):
its paged cache packs every request into one flat row and knows nothing of PEFT's per-request
`adapter_names` nor of our P-tuning prefix, which lives in a DynamicCache filled by a forward hook
(doctorkit.methods.ptuning.prefix). So we batch at the request level: a worker thread per model takes the
oldest waiting request, waits `window` seconds for company, and runs every waiting request with the same
batch key (same sampling settings; for a P-tuning model also the same served name) through
doctorkit.generation.generate_rows. Requests that arrive during a batch wait for the next one; rows that end
early (stop token, max_tokens, client gone, time limit) stop costing compute at once.
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from doctorkit.generation import Row, generate_rows


class QueueFull(Exception):
    pass


@dataclass
class Job:
    served: object                  # serve.models.Served
    row: Row
    sampling: dict                  # temperature / top_p / repetition_penalty
    seed: int | None
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue           # ("text", piece) ... then ("done", None) or ("error", (status, message))
    queued_at: float = field(default_factory=time.monotonic)

    def emit(self, kind: str, payload=None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:   # the request's event loop is gone (server stopping): nobody is listening
            pass

    @property
    def key(self):
        s = self.sampling
        if not s.get("temperature"):   # greedy: top_p and seed change nothing
            return (0.0, None, s.get("repetition_penalty"), None)
        return (s["temperature"], s.get("top_p"), s.get("repetition_penalty"), self.seed)


class Batcher:
    def __init__(self, backend, max_batch: int = 16, window: float = 0.02, queue_size: int = 64,
                 queue_timeout: float = 60.0, time_limit: float = 120.0):
        self.backend, self.max_batch, self.window = backend, max_batch, window
        self.queue_size, self.queue_timeout, self.time_limit = queue_size, queue_timeout, time_limit
        self.waiting: deque[Job] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.batches = 0                # generate() calls so far (tests and /health read it)
        self.thread = threading.Thread(target=self._loop, name=f"batcher-{backend.label}", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self.cond:
            if self.closed:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) >= self.queue_size:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting for this model; retry later")
            job.row.on_text = lambda piece: job.emit("text", piece)
            self.waiting.append(job)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for job in self.waiting:
                job.emit("error", (503, "the server is shutting down"))
            self.waiting.clear()
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                short = len(self.waiting) < self.max_batch
            if short:   # let requests sent at the same moment join this batch
                time.sleep(self.window)
            batch = self._take_batch()
            if batch:
                self._run(batch)

    def _take_batch(self) -> list[Job]:
        now = time.monotonic()
        with self.cond:
            live = []
            for job in self.waiting:   # drop what nobody waits for any more, and what waited too long
                if job.row.cancel is not None and job.row.cancel.is_set():
                    job.row.finish("cancelled")
                    job.emit("done")
                elif now - job.queued_at > self.queue_timeout:
                    job.emit("error", (503, f"waited {self.queue_timeout:g} s in the queue; the server is "
                                            f"overloaded, retry later"))
                else:
                    live.append(job)
            if not live:
                self.waiting.clear()
                return []
            first = live[0]
            key = (self.backend.batch_key(first.served), first.key)
            batch = [j for j in live if (self.backend.batch_key(j.served), j.key) == key][:self.max_batch]
            taken = set(map(id, batch))
            self.waiting = deque(j for j in live if id(j) not in taken)
            return batch

    def _run(self, batch: list[Job]) -> None:
        deadline = time.monotonic() + self.time_limit
        for job in batch:
            job.row.deadline = deadline
        switch, extra = self.backend.generate_context([j.served for j in batch])
        first = batch[0]
        try:
            with switch:
                generate_rows(self.backend.model, first.served.tokenizer, [j.row for j in batch],
                              first.sampling, seed=first.seed, **extra)
        except Exception as err:   # one line to the log and to each client; the worker keeps serving
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"serve: generation failed for {len(batch)} request(s): {type(err).__name__}: {message}",
                  file=sys.stderr, flush=True)
            for job in batch:
                job.emit("error", (500, f"generation failed: {message}"))
            return
        finally:
            self.batches += 1
        for job in batch:
            job.emit("done")
