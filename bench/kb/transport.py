"""HTTP for the LLM backend: one POST that never follows a redirect and ends at a deadline, and the
endpoint's secrets masked in everything written or shown.

urllib's ``timeout`` bounds each socket operation, not a request: an endpoint that sends a byte a second
is never timed out.  Here every receive, of the headers and of the body, waits at most until the
request's deadline::

    raw = post(url, body, headers, deadline=time.monotonic() + 120)  # bytes; OSError/URLError on failure
    secrets = Secrets(api_key, base_url)
    secrets.mask(reply_text)                                          # the key -> ***
    shown_url("http://host/v1?key=abc")                               # "http://host/v1?key=***"
"""
from __future__ import annotations

import http.client
import io
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import List, Optional

MASK = "***"
# A secret is masked in free text only from this length: a shorter one is ordinary text too (a key 'e' would
# turn 'red' into 'r***d' in every phrase; api-version=1 would mask every 1).
SECRET_LENGTH = 8


class Redirected(urllib.error.URLError):
    """The endpoint answered with a redirect (its target in the message)."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a POST's 301/302/303 with the same headers, the key included, to any host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise Redirected(newurl)


class _ReplyReader(io.RawIOBase):
    """A socket's reading side whose every receive waits at most until ``deadline`` (time.monotonic)."""

    def __init__(self, sock, deadline: float):
        super().__init__()
        self._sock, self._deadline = sock, deadline
        self._file = sock.makefile("rb", buffering=0)  # holds the socket open after urllib closes its own

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the reply did not end by the deadline")
        self._sock.settimeout(left)
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose files read with a deadline: http.client reads a reply through ``makefile``."""

    def __init__(self, sock, deadline: float):
        self._sock, self._deadline = sock, deadline

    def makefile(self, *args, **kwargs):
        return io.BufferedReader(_ReplyReader(self._sock, self._deadline))

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _DeadlineMixin:
    deadline = float("inf")

    def connect(self):
        super().connect()  # connecting and TLS: bounded by the connection's timeout (the time left)
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _HTTPConnection(_DeadlineMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):
    pass


def _for_request(connection_class, req):
    def connect(host, **kwargs):
        connection = connection_class(host, **kwargs)
        connection.deadline = getattr(req, "deadline", float("inf"))
        return connection
    return connect


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_for_request(_HTTPConnection, req), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_for_request(_HTTPSConnection, req), req, context=self._context)


OPENER = urllib.request.build_opener(_RefuseRedirects, _HTTPHandler, _HTTPSHandler)


def post(url: str, body: bytes, headers: dict, deadline: float, limit: int = 1_000_000) -> bytes:
    """The reply's body (at most ``limit`` bytes) to a POST, all of it received by ``deadline``."""
    request = urllib.request.Request(url, body, headers, method="POST")
    request.deadline = deadline
    with OPENER.open(request, timeout=max(deadline - time.monotonic(), 0.001)) as reply:
        return reply.read(limit)


def timed_out(err: BaseException) -> bool:
    return isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError)


def endpoint_url(base_url: str, path: str) -> str:
    """``path`` joined onto the base URL's path; its query kept after it (a fragment is never sent)."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, fragment=""))


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: ``http://user:KEY@host`` -> ``http://***@host``
    (everything from ``//`` to the line's last ``@``: a password may hold '@', '/' or spaces, and masking
    too much is the safe side)."""
    return re.sub(r"(?<=//).*@", MASK + "@", str(text))


def shown_url(text: str) -> str:
    """``text`` with every URL's credentials and query values masked (``?key=***&v=***``)."""
    return re.sub(r"(?<=[?&])([^=&#\s]*=)[^&#\s]*", r"\1" + MASK, redact_url(text))


def query_values(url: str) -> List[str]:
    """The values of a URL's query string, as written and decoded."""
    raw = [part.partition("=")[2] for part in urllib.parse.urlsplit(url).query.split("&")]
    return raw + [urllib.parse.unquote_plus(value) for value in raw]


class Secrets:
    """The strings never to write or show: the API key and the endpoint URL's query values, those of
    ``SECRET_LENGTH`` characters or more (inside URLs every query value is masked, by :func:`shown_url`)."""

    def __init__(self, key: Optional[str], base_url: str):
        words = [(key or "").strip(), *query_values(base_url)]
        self._words = sorted({word for word in words if len(word) >= SECRET_LENGTH}, key=len, reverse=True)
        self.short_key = bool(key and key.strip()) and len(key.strip()) < SECRET_LENGTH

    def mask(self, text: str) -> str:
        """``text`` (a reply) with every secret replaced by ``***``."""
        text = str(text)
        for word in self._words:
            text = text.replace(word, MASK)
        return text

    def mask_message(self, text: str) -> str:
        """``text`` (an error, a URL) with the secrets and every URL's credentials and query values masked."""
        return shown_url(self.mask(text))
