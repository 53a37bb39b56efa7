"""Hostile LLM endpoints (issue 39, items 20-22): a reply that echoes the key, a key in the URL's query,
an endpoint that stays silent or trickles, and reply text with control characters; each against a local
HTTP server."""
import io
import json
import sys
import threading
import time
import unicodedata
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.core.errors import BenchError
from bench.kb.backends import CallableBackend, KBRequest, OpenAICompatibleBackend, ResponseCache
from bench.kb.knowledge import build_kb, read_kb, write_kb
from bench.kb.prompts import check, clean
from test_kb import GOOD
from test_overrides import one_error, run  # noqa: E402  (the CLI helpers)

KEY = "sk-hostile-secret-987"
QUERY_KEY = "QUERYSECRET42"
REQUEST = KBRequest("apple", "GA", None, "prompt")


class Endpoint(BaseHTTPRequestHandler):
    """A chat-completions endpoint that behaves as ``mode`` says: ``echo`` (a phrase holding the request's
    Authorization header and path), ``refuse`` (401), ``fail`` (500), ``silent`` (never answers),
    ``trickle_body``/``trickle_head`` (a byte every 50 ms for 4 s), ``slow`` (a good reply after 0.15 s)."""

    mode, seen, stop = "echo", [], threading.Event()
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Endpoint.seen.append(self.path)
        getattr(self, Endpoint.mode)()

    def reply(self, content: str, status: int = 200):
        body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def echo(self):
        self.reply(f"a round red fruit with shiny skin, a short stem and a label reading "
                   f"{self.headers['Authorization']} {self.path}")

    def refuse(self):
        self.reply("no", 401)

    def fail(self):
        self.reply("down", 500)

    def slow(self):
        time.sleep(0.15)
        self.reply(GOOD["GA"])

    def silent(self):
        Endpoint.stop.wait(10)

    def trickle_body(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.trickle(b" " * 80)

    def trickle_head(self):
        self.trickle(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 80)

    def trickle(self, data: bytes):
        for byte in data:
            if Endpoint.stop.wait(0.05):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def log_message(self, *args):
        pass


@contextmanager
def endpoint(mode: str):
    """The base URL of a local endpoint in ``mode``."""
    Endpoint.mode, Endpoint.seen = mode, []
    Endpoint.stop.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.daemon_threads, server.block_on_close = True, False
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        Endpoint.stop.set()
        server.shutdown()
        server.server_close()


# --- 20: the key, echoed or in the URL, is never written or printed ----------------------------------

def test_a_key_the_endpoint_echoes_is_masked_in_the_cache_and_the_kb(tmp_path):
    cache = tmp_path / "kb.responses.jsonl"
    with endpoint("echo") as url:
        backend = ResponseCache(OpenAICompatibleBackend(f"{url}?key={QUERY_KEY}", "m", KEY, wait=0), cache)
        kb = build_kb("d", ["apple"], {"apple": "pear"}, backend)
    write_kb(kb, tmp_path / "kb.json")
    written = cache.read_text() + (tmp_path / "kb.json").read_text()
    assert KEY not in written and QUERY_KEY not in written
    assert "Bearer ***" in written and "/v1/chat/completions?key=***" in written
    again = ResponseCache(OpenAICompatibleBackend(url, "m", KEY), cache)  # replayed replies: masked too
    assert KEY not in json.dumps(build_kb("d", ["apple"], {"apple": "pear"}, again).entries) and again.calls == 0


@pytest.mark.parametrize("key", ["e", " ", "red"])
def test_a_key_too_short_to_mask_leaves_the_replies_words_alone_with_a_warning(capsys, key):
    """Masking a key of one letter turned 'red' into 'r***d' in every phrase (a blank key: every phrase)."""
    with endpoint("slow") as url:
        text = OpenAICompatibleBackend(url, "m", key, wait=0).generate(REQUEST)
    assert text == GOOD["GA"]
    warned = "MDPR_LLM_API_KEY has fewer than 8 characters: too short to mask" in capsys.readouterr().err
    assert warned == bool(key.strip())


def test_a_query_string_stays_after_the_path_and_its_values_are_never_shown(capsys):
    with endpoint("refuse") as url:
        backend = OpenAICompatibleBackend(f"{url}/?api-version=2024-02-01&key={QUERY_KEY}", "m", KEY)
        with pytest.raises(BenchError, match="refused the request") as err:
            backend.generate(REQUEST)
    assert Endpoint.seen == [f"/v1/chat/completions?api-version=2024-02-01&key={QUERY_KEY}"]
    assert f"{url}/chat/completions?api-version=***&key=*** refused" in str(err.value)
    assert QUERY_KEY not in str(err.value) + repr(backend)
    with endpoint("fail") as url:  # the retry warnings too
        with pytest.raises(BenchError, match="failed 2 times"):
            OpenAICompatibleBackend(f"{url}?key={QUERY_KEY}", "m", KEY, retries=2, wait=0).generate(REQUEST)
    err = capsys.readouterr().err
    assert f"bench: warning: LLM endpoint {url}/chat/completions?key=***, class 'apple' (GA): try 1 of 2 failed " \
           "(HTTP 500); trying again" in err and QUERY_KEY not in err


@pytest.mark.slow  # builds the smoke protocol's partners
def test_the_error_line_masks_a_key_in_the_url_query(capsys, monkeypatch, tmp_path):
    with endpoint("refuse") as url:
        monkeypatch.setenv("MDPR_LLM_BASE_URL", f"{url}?key={QUERY_KEY}")
        monkeypatch.setenv("MDPR_LLM_MODEL", "m")
        monkeypatch.setenv("MDPR_LLM_API_KEY", KEY)
        error = one_error(capsys, "kb", "build", "--dataset", "smoke", "--backend", "llm", "--device", "cpu",
                          "--out", str(tmp_path / "kb.json"))
    assert "/v1/chat/completions?key=*** refused the request (HTTP 401)" in error and QUERY_KEY not in error


# --- 21: deadlines for a request and for the build, and progress ---------------------------------------

@pytest.mark.parametrize("mode", ["silent", "trickle_head", "trickle_body"])
def test_a_request_ends_at_its_deadline_however_slowly_the_reply_trickles(mode):
    """The old code's timeout bounded each socket read: a byte every 50 ms kept a request going for 4 s."""
    with endpoint(mode) as url:
        backend = OpenAICompatibleBackend(url, "m", KEY, retries=1, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BenchError, match=r"failed 1 times .*: no complete reply within 0\.3 s"):
            backend.generate(REQUEST)
    assert time.monotonic() - started < 2.5  # the old code: 4 s or more


def test_the_build_stops_at_its_time_limit_keeping_the_replies_so_far(tmp_path, capsys):
    cache = tmp_path / "replies.jsonl"
    classes = ["apple", "pear"]
    with endpoint("slow") as url:  # 0.15 s a reply: ten replies take 1.5 s
        backend = ResponseCache(OpenAICompatibleBackend(url, "m", KEY, timeout=5, time_limit=0.5), cache)
        started = time.monotonic()
        with pytest.raises(BenchError, match=r"passed its time limit \(0\.5 s, --time-limit\) at class 'apple'"):
            build_kb("d", classes, {"apple": "pear", "pear": "apple"}, backend, max_retries=0)
        assert time.monotonic() - started < 1.4
        kept = len(cache.read_text().splitlines())
        assert 1 <= kept < 5
        rerun = ResponseCache(OpenAICompatibleBackend(url, "m", KEY), cache)
        build_kb("d", classes, {"apple": "pear", "pear": "apple"}, rerun, max_retries=0)
    assert rerun.calls == 10 - kept  # the rerun went on from the kept replies


@pytest.mark.slow  # builds the smoke protocol's partners
def test_kb_build_time_limit_is_one_error_line(capsys, monkeypatch, tmp_path):
    with endpoint("silent") as url:
        monkeypatch.setenv("MDPR_LLM_BASE_URL", url)
        monkeypatch.setenv("MDPR_LLM_MODEL", "m")
        started = time.monotonic()
        error = one_error(capsys, "kb", "build", "--dataset", "smoke", "--backend", "llm", "--device", "cpu",
                          "--out", str(tmp_path / "kb.json"), "--request-timeout", "1", "--time-limit", "1")
    assert "the knowledge-base build passed its time limit (1 s, --time-limit) at class 'apple' (GA)" in error
    assert time.monotonic() - started < 60 and len(Endpoint.seen) == 1


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.slow  # builds the smoke protocol's partners
def test_kb_build_shows_a_progress_bar_on_a_terminal(capsys, monkeypatch, tmp_path):
    terminal = Terminal()
    with endpoint("echo") as url:
        monkeypatch.setenv("MDPR_LLM_BASE_URL", url)
        monkeypatch.setenv("MDPR_LLM_MODEL", "m")
        monkeypatch.setenv("MDPR_LLM_API_KEY", KEY)
        monkeypatch.setattr(sys, "stderr", terminal)
        code, out, _ = run(capsys, "kb", "build", "--dataset", "smoke", "--backend", "llm", "--device", "cpu",
                           "--out", str(tmp_path / "kb.json"))
    assert code == 0 and "kb smoke:" in terminal.getvalue() and " 0/50 [" in terminal.getvalue()
    assert "phrase/s]" in terminal.getvalue()
    assert "kb smoke: 10 classes" in out
    written = (tmp_path / "kb.json").read_text() + (tmp_path / "kb.responses.jsonl").read_text()
    assert KEY not in written + out + terminal.getvalue()


# --- 22: control characters in replies never reach phrases or CLIP prompts --------------------------

@pytest.mark.parametrize("reply, phrase", [
    ("a red\x00 fruit", "a red fruit"),
    ("a \u202ered\u202c fruit \u2066with\u2069 \u200fa stem\u200e", "a red fruit with a stem"),
    ("a \x1b[31mred\x1b[0m fruit\x1b]0;owned\x07 \x1b[2J\x1bc", "a red fruit"),
    ("a \x9b1mred\x9b0m \x9d0;title\x9cfruit\x85with\x0ca\x07 stem\x7f", "a red fruit with a stem"),
    ("a\u200b red\ufeff fruit \udc80\U000e0041\U000e0042", "a red fruit"),
    ("a red\tfruit\r\nwith  a stem", "a red fruit with a stem"),
])
def test_clean_drops_control_format_and_escape_characters(reply, phrase):
    assert clean(reply) == phrase


def test_a_reply_full_of_control_characters_gives_a_plain_sentence():
    hostile = {dim: f"\x1b[8m\u202e{text[:20]}\x00\u2067{text[20:]}\x1b]8;;http://x\x1b\\\x07."
               for dim, text in GOOD.items()}
    kb = build_kb("d", ["apple"], {"apple": "pear"}, CallableBackend(lambda req: hostile[req.dimension]))
    for dim, entry in kb.entries["apple"].items():
        assert entry["valid"] and entry["phrase"] == GOOD[dim], (dim, entry)
        assert all(unicodedata.category(c)[0] != "C" for c in entry["sentence"])
    assert check("GA", kb.entries["apple"]["GA"]["phrase"], "apple", None, 25) is None


def test_a_cached_reply_with_control_characters_is_read_clean(tmp_path):
    cache = tmp_path / "c.jsonl"
    first = build_kb("d", ["apple"], {"apple": "pear"},
                     ResponseCache(CallableBackend(lambda req: "\x1b[31m" + GOOD[req.dimension] + "\u202e"), cache))
    replayed = build_kb("d", ["apple"], {"apple": "pear"}, ResponseCache(None, cache, strict=True, model="test"))
    assert replayed.entries == first.entries and "\x1b" not in json.dumps(replayed.entries)
    write_kb(replayed, tmp_path / "kb.json")
    assert read_kb(tmp_path / "kb.json").sentences("apple")["GA"] == f"A apple typically appears as {GOOD['GA']}."
