"""Where knowledge-base phrases come from: an interface and its backends (methods_spec §7.5).

- :class:`OfflineTemplateBackend` (default): fixed CLIP-style phrases per dimension; no network, deterministic.
- :class:`OpenAICompatibleBackend`: any OpenAI-compatible chat endpoint.  URL, model and key come from
  the environment (``MDPR_LLM_BASE_URL``, ``MDPR_LLM_MODEL``, ``MDPR_LLM_API_KEY``); the key is sent in
  the request header only, never stored or shown (masked in replies, errors and URLs, as are the URL's
  query values).  Replies are untrusted text: a reply that is not the expected JSON shape is a transport
  failure (retried, then an error).  Each request has a deadline for the whole reply (``timeout``), and
  all of them together a ``time_limit``.
- :class:`ResponseCache`: every reply, appended to a JSONL file as it arrives and keyed by
  ``sha256(model | prompt | temperature | attempt)``, so a rerun makes no calls and an interrupted build
  keeps what it received; ``strict`` replays only (a miss is an error).
- :class:`CallableBackend`: a function, for tests::

    backend = ResponseCache(OpenAICompatibleBackend.from_environment(), Path("kb/cifar.responses.jsonl"))
    text = backend.generate(KBRequest("apple", "GA", None, prompt))
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from tqdm import tqdm

from bench.core.safeyaml import load_json
from bench.core.errors import BenchError, reason, warn
from bench.core.namedfiles import read_named_text
from .transport import SECRET_LENGTH, Redirected, Secrets, endpoint_url, post, redact_url, shown_url, timed_out

__all__ = ["KBRequest", "OfflineTemplateBackend", "CallableBackend", "OpenAICompatibleBackend", "ResponseCache",
           "Redirected", "redact_url", "reply_text", "response_key"]

KEY_ENV, URL_ENV, MODEL_ENV = "MDPR_LLM_API_KEY", "MDPR_LLM_BASE_URL", "MDPR_LLM_MODEL"

CACHE_LIMIT = 512 << 20  # bytes: the replies of a 1000-class build are about 10 MB


@dataclass(frozen=True)
class KBRequest:
    classname: str
    dimension: str  # GA FT FA DF CI
    confusing_class: Optional[str]
    prompt: str
    target_words: int = 25
    temperature: float = 0.5  # bug/many_api.py passes 0.5 explicitly
    max_tokens: int = 75  # 3 x target words, as the code
    attempt: int = 0


class OfflineTemplateBackend:
    """Phrases that make dimension-specific, CLIP-style sentences with no LLM (registry: *_offlinekb)."""

    name, model, trusted = "offline-template-v1", None, True  # trusted: its phrases skip the LLM check
    PHRASES = {
        "GA": "a {c} with its usual shape, colour and texture",
        "FT": "the purposes a {c} usually serves",
        "FA": "a close-up detail typical of a {c}",
        "DF": "its own distinctive appearance",
        "CI": "the places where a {c} is usually seen",
    }

    def generate(self, req: KBRequest) -> str:
        return self.PHRASES[req.dimension].format(c=req.classname)


class CallableBackend:
    name, trusted = "callable", False

    def __init__(self, fn: Callable[[KBRequest], str], model: str = "test"):
        self.fn, self.model = fn, model

    def generate(self, req: KBRequest) -> str:
        return self.fn(req)


class OpenAICompatibleBackend:
    """``POST {base_url}/chat/completions`` with one user message; transport failures and malformed
    replies are retried with exponential back-off (``retries`` tries in all, as the code's tenacity).
    ``timeout``: seconds for one request in all, however slowly its reply trickles in; ``time_limit``:
    seconds for every request from this backend's creation on (None: no limit)."""

    name, trusted = "openai-compatible", False

    def __init__(self, base_url: str, model: str, api_key: Optional[str], retries: int = 6,
                 wait: float = 1.0, max_wait: float = 60.0, timeout: float = 120.0,
                 time_limit: Optional[float] = None):
        if "@" in base_url:
            raise BenchError(f"{URL_ENV} holds credentials ({shown_url(base_url)}); give the endpoint without "
                             f"them and the key in {KEY_ENV}")
        try:
            parts = urllib.parse.urlsplit(base_url)
            parts.port  # noqa: B018  (a port that is not a number raises here, not mid-build)
        except ValueError as err:
            raise BenchError(f"{URL_ENV} is not a URL ({reason(err)}); e.g. http://localhost:8000/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchError(f"{URL_ENV} must be an http(s) URL with a host, e.g. http://localhost:8000/v1")
        self.url = endpoint_url(base_url, "/chat/completions")
        self.shown_url = shown_url(self.url)
        self.model, self._key, self._secrets = model, api_key, Secrets(api_key, base_url)
        if self._secrets.short_key:
            warn(f"{KEY_ENV} has fewer than {SECRET_LENGTH} characters: too short to mask in the replies written "
                 "without changing their words, so an endpoint that echoes it would have it written; is it the key?")
        self.retries, self.wait, self.max_wait, self.timeout = retries, wait, max_wait, timeout
        self.time_limit = time_limit
        self.finish_by = time.monotonic() + time_limit if time_limit else float("inf")

    @classmethod
    def from_environment(cls, **kwargs) -> "OpenAICompatibleBackend":
        missing = [name for name in (URL_ENV, MODEL_ENV) if not os.environ.get(name)]
        if missing:
            raise BenchError(f"the llm backend reads its endpoint from the environment: set {' and '.join(missing)} "
                             f"(and {KEY_ENV} if the endpoint needs a key)")
        return cls(os.environ[URL_ENV], os.environ[MODEL_ENV], os.environ.get(KEY_ENV), **kwargs)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleBackend(url={self.shown_url!r}, model={self.model!r})"

    def redact(self, text: str) -> str:
        """``text`` (a message) with the key, the URL's query values and any URL's credentials masked."""
        return self._secrets.mask_message(text)

    def mask(self, text: str) -> str:
        """``text`` (a reply) with the key and the URL's query values masked."""
        return self._secrets.mask(text)

    def generate(self, req: KBRequest) -> str:
        problem = ""
        for attempt in range(self.retries):
            if attempt:
                self._deadline(req)  # past the time limit: that error, not a notice of another try
                self._retry_notice(req, attempt, problem)
                time.sleep(max(0.0, min(self.max_wait, self.wait * 2 ** (attempt - 1) * (1 + random.random()),
                                        self.finish_by - time.monotonic())))
            try:
                return self.mask(self._post(req, self._deadline(req)))
            except _Retry as err:
                problem = str(err)
        self._deadline(req)  # a last try cut short by the time limit says so
        raise BenchError(f"LLM endpoint {self.shown_url} failed {self.retries} times for class '{req.classname}' "
                         f"({req.dimension}): {problem}; answers received so far are kept in the response cache")

    def _deadline(self, req: KBRequest) -> float:
        """When the next request must be over; an error once the time limit has passed."""
        now = time.monotonic()
        if now >= self.finish_by:
            raise BenchError(f"the knowledge-base build passed its time limit ({self.time_limit:g} s, --time-limit) "
                             f"at class '{req.classname}' ({req.dimension}); the replies received so far are kept "
                             "in the response cache, so the same command goes on from there (or give a larger "
                             "--time-limit)")
        return min(now + self.timeout, self.finish_by)

    def _retry_notice(self, req: KBRequest, attempt: int, problem: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):  # above a progress bar, not inside it
            warn(f"LLM endpoint {self.shown_url}, class '{req.classname}' ({req.dimension}): try {attempt} of "
                 f"{self.retries} failed ({problem}); trying again")

    def _post(self, req: KBRequest, deadline: float) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": req.prompt}],
                "temperature": req.temperature, "max_tokens": req.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        started = time.monotonic()
        try:
            raw = post(self.url, json.dumps(body).encode(), headers, deadline)
        except Redirected as err:
            raise BenchError(f"LLM endpoint {self.shown_url} answered with a redirect to {self.redact(err.reason)}; "
                             f"it is not followed, so the key never leaves for another address: set {URL_ENV} to "
                             "the final endpoint") from None
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise BenchError(f"LLM endpoint {self.shown_url} refused the request (HTTP {err.code}); "
                                 f"check {KEY_ENV}") from None
            raise _Retry(f"HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            if timed_out(err) or time.monotonic() >= deadline:
                raise _Retry(f"no complete reply within {deadline - started:.3g} s") from None
            raise _Retry(f"cannot reach it ({self.redact(str(getattr(err, 'reason', err)))})") from None
        return reply_text(raw)


class _Retry(Exception):
    """A failure worth another try."""


def reply_text(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions reply, checked for shape."""
    try:
        content = load_json(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry("the reply is not a chat-completions JSON object with choices[0].message.content") from None
    if not isinstance(content, str):
        raise _Retry("choices[0].message.content is not text")
    return content[:10_000]


def response_key(model: Optional[str], req: KBRequest) -> str:
    blob = "\n".join([str(model), req.prompt, repr(req.temperature), str(req.attempt)])
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Replays cached replies and records new ones from ``inner`` (None with ``strict``: replay only)."""

    def __init__(self, inner, path: Path, strict: bool = False, model: Optional[str] = None):
        self.inner, self.path, self.strict = inner, Path(path), strict
        self.model = getattr(inner, "model", None) or model
        self.name, self.trusted = getattr(inner, "name", "cached"), False
        self.calls = 0  # replies fetched from ``inner`` (not replayed)
        self.replies: Dict[str, str] = self._read()

    def _read(self) -> Dict[str, str]:
        if not self.path.exists():
            if self.strict:
                raise BenchError(f"response cache '{self.path}' does not exist; build without --strict-cache first")
            return {}
        replies = {}
        mask = getattr(self.inner, "mask", str)  # a cache written before masking may hold the key
        for number, line in enumerate(read_named_text(self.path, "response cache", CACHE_LIMIT).splitlines(), 1):
            try:
                entry = load_json(line)
                replies[str(entry["key"])] = mask(str(entry["text"]))
            except (ValueError, KeyError, TypeError):  # a line cut short by a crash: drop it, refetch
                if self.strict:
                    raise BenchError(f"response cache '{self.path}' line {number} is not a cache entry") from None
        return replies

    def generate(self, req: KBRequest) -> str:
        key = response_key(self.model, req)
        if key in self.replies:
            return self.replies[key]
        if self.strict or self.inner is None:
            raise BenchError(f"response cache '{self.path}' has no reply for class '{req.classname}' "
                             f"({req.dimension}, attempt {req.attempt}); rebuild without --strict-cache")
        text = self.inner.generate(req)
        self.calls += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:  # one line per reply, kept whatever happens next
            out.write(json.dumps({"key": key, "model": self.model, "class": req.classname,
                                  "dimension": req.dimension, "attempt": req.attempt, "text": text}) + "\n")
        self.replies[key] = text
        return text
