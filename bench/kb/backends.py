"""Where knowledge-base phrases come from: an interface and its backends (methods_spec §7.5).

- :class:`OfflineTemplateBackend` (default): fixed CLIP-style phrases per dimension; no network, deterministic.
- :class:`OpenAICompatibleBackend`: any OpenAI-compatible chat endpoint.  URL, model and key come from
  the environment (``MDPR_LLM_BASE_URL``, ``MDPR_LLM_MODEL``, ``MDPR_LLM_API_KEY``); the key is sent in
  the request header only, never stored or shown.  Replies are untrusted text: a reply that is not the
  expected JSON shape is a transport failure (retried, then an error).
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
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from bench.core.safeyaml import load_json
from bench.core.errors import BenchError, reason

KEY_ENV, URL_ENV, MODEL_ENV = "MDPR_LLM_API_KEY", "MDPR_LLM_BASE_URL", "MDPR_LLM_MODEL"


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
    replies are retried with exponential back-off (``retries`` tries in all, as the code's tenacity)."""

    name, trusted = "openai-compatible", False

    def __init__(self, base_url: str, model: str, api_key: Optional[str], retries: int = 6,
                 wait: float = 1.0, max_wait: float = 60.0, timeout: float = 120.0):
        if "@" in base_url:
            raise BenchError(f"{URL_ENV} holds credentials ({redact_url(base_url)}); give the endpoint without "
                             f"them and the key in {KEY_ENV}")
        try:
            parts = urllib.parse.urlsplit(base_url)
            parts.port  # noqa: B018  (a port that is not a number raises here, not mid-build)
        except ValueError as err:
            raise BenchError(f"{URL_ENV} is not a URL ({reason(err)}); e.g. http://localhost:8000/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchError(f"{URL_ENV} must be an http(s) URL with a host, e.g. http://localhost:8000/v1")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self._key = model, api_key
        self.retries, self.wait, self.max_wait, self.timeout = retries, wait, max_wait, timeout

    @classmethod
    def from_environment(cls, **kwargs) -> "OpenAICompatibleBackend":
        missing = [name for name in (URL_ENV, MODEL_ENV) if not os.environ.get(name)]
        if missing:
            raise BenchError(f"the llm backend reads its endpoint from the environment: set {' and '.join(missing)} "
                             f"(and {KEY_ENV} if the endpoint needs a key)")
        return cls(os.environ[URL_ENV], os.environ[MODEL_ENV], os.environ.get(KEY_ENV), **kwargs)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleBackend(url={self.url!r}, model={self.model!r})"

    def redact(self, text: str) -> str:
        """``text`` with the key, and any credentials of a URL, masked."""
        text = redact_url(text)
        return text.replace(self._key, "***") if self._key else text

    def generate(self, req: KBRequest) -> str:
        problem = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(min(self.max_wait, self.wait * 2 ** (attempt - 1) * (1 + random.random())))
            try:
                return self._post(req)
            except _Retry as err:
                problem = str(err)
        raise BenchError(f"LLM endpoint {self.url} failed {self.retries} times for class '{req.classname}' "
                         f"({req.dimension}): {problem}; answers received so far are kept in the response cache")

    def _post(self, req: KBRequest) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": req.prompt}],
                "temperature": req.temperature, "max_tokens": req.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with NO_REDIRECTS.open(request, timeout=self.timeout) as reply:
                raw = reply.read(1_000_000)
        except Redirected as err:
            raise BenchError(f"LLM endpoint {self.url} answered with a redirect to {redact_url(str(err.reason))}; it is not "
                             f"followed, so the key never leaves for another address: set {URL_ENV} to the final "
                             "endpoint") from None
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise BenchError(f"LLM endpoint {self.url} refused the request (HTTP {err.code}); "
                                 f"check {KEY_ENV}") from None
            raise _Retry(f"HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            raise _Retry(f"cannot reach it ({self.redact(str(getattr(err, 'reason', err)))})") from None
        return reply_text(raw)


class Redirected(urllib.error.URLError):
    """The endpoint answered with a redirect (its target in the message)."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a POST's 301/302/303 with the same headers, the key included, to any host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise Redirected(newurl)


NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: ``http://user:KEY@host`` -> ``http://***@host``
    (everything from ``//`` to the line's last ``@``: a password may hold '@', '/' or spaces, and masking
    too much is the safe side)."""
    return re.sub(r"(?<=//).*@", "***@", str(text))


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
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                entry = load_json(line)
                replies[str(entry["key"])] = str(entry["text"])
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
