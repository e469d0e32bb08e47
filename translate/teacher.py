"""The teacher: any OpenAI-compatible chat endpoint, called through the official `openai` client.

Retries are our own loop, with the client's built-in retries turned off (max_retries=0), because:
the client's backoff (0.5 s doubling to 8 s) is fixed in module constants, so neither a slow paid API
(longer waits) nor the tests (near-zero waits) could set it; and the client does not retry a 200 reply
whose body is garbage or whose translation is empty, which a flaky proxy does produce. We retry 429,
408/409, 5xx, timeouts, dropped connections and garbage; other HTTP errors (401, 404, 400) are the
user's to fix and stop at once with one line.
"""
from __future__ import annotations

import os
import random
import threading
import time

import openai

from doctorkit.errors import DoctorKitError
from translate.cache import Cached
from translate.recipe import TeacherConfig

RETRY_STATUS = {408, 409, 429}


class GarbageReply(ValueError):
    """A 200 reply that is not a chat completion with text in it."""


class Teacher:
    def __init__(self, cfg: TeacherConfig):
        api_key = os.environ.get(cfg.api_key_env, "").strip()
        if not api_key:
            raise DoctorKitError(f"teacher: environment variable {cfg.api_key_env} is not set; export your API key "
                                 f"for {cfg.base_url} there (or name another variable in teacher.api_key_env)")
        self.cfg = cfg
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key, timeout=cfg.timeout_s, max_retries=0)
        self._lock = threading.Lock()
        self.attempts = 0      # HTTP requests sent, retries included
        self.retries = 0       # of which were retries

    def _ask(self, text: str) -> Cached:
        reply = self.client.chat.completions.create(
            model=self.cfg.model, temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens,
            messages=[{"role": "system", "content": self.cfg.prompt}, {"role": "user", "content": text}])
        choices = getattr(reply, "choices", None)
        content = choices[0].message.content if choices and getattr(choices[0], "message", None) else None
        if not isinstance(content, str) or not content.strip():
            raise GarbageReply("reply carries no translation")
        usage = getattr(reply, "usage", None)
        return Cached(content.strip(), getattr(usage, "prompt_tokens", 0) or 0,
                      getattr(usage, "completion_tokens", 0) or 0)

    def _wait(self, attempt: int, err: Exception) -> float:
        wait = self.cfg.backoff_s * 2 ** attempt * (0.5 + random.random())  # jitter spreads the threads out
        response = getattr(err, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            wait = max(wait, float(retry_after))
        return min(wait, self.cfg.backoff_max_s)

    def translate(self, text: str) -> Cached:
        """One translation; retries transient failures, raises DoctorKitError when it gives up."""
        last, error = "?", None
        for attempt in range(self.cfg.max_retries + 1):
            with self._lock:
                self.attempts += 1
                self.retries += attempt > 0
            try:
                return self._ask(text)
            except openai.APIStatusError as err:
                if err.status_code not in RETRY_STATUS and err.status_code < 500:
                    raise DoctorKitError(f"teacher {self.cfg.base_url}: HTTP {err.status_code} "
                                         f"({str(err.message)[:160]})") from None
                last, error = f"HTTP {err.status_code}", err
            except openai.APITimeoutError as err:
                last, error = f"timed out after {self.cfg.timeout_s:g} s", err
            except openai.APIConnectionError as err:
                last, error = f"connection failed ({type(err.__cause__ or err).__name__})", err
            except (GarbageReply, ValueError, openai.APIResponseValidationError) as err:
                last, error = f"garbage reply ({type(err).__name__})", err
            if attempt < self.cfg.max_retries:
                time.sleep(self._wait(attempt, error))
        raise DoctorKitError(f"teacher {self.cfg.base_url}: gave up after {self.cfg.max_retries + 1} attempts, "
                             f"last: {last}")
