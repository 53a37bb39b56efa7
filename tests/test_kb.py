"""MDPR knowledge bases: prompts, the verification check, files, backends (a local fake LLM server), the CLI."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from bench.cli import main
from bench.core.errors import BenchError
from bench.kb.backends import CallableBackend, OfflineTemplateBackend, OpenAICompatibleBackend, ResponseCache
from bench.kb.confusion import text_partners, zeroshot_partners
from bench.kb.knowledge import build_kb, read_kb, write_kb
from bench.kb.prompts import check, clean, frame_sentence, query

KEY = "sk-test-secret-123"
GOOD = {
    "GA": "a round fruit with smooth shiny red or green skin, a short brown stem and a small leaf on top",
    "FT": "eating fresh as a snack, baking into pies, pressing into juice and cider, and adding crunch to salads",
    "FA": "a small dark brown stem sitting in a shallow dimple at the top of its glossy round body",
    "DF": "a rounder shape, firmer crisp flesh and a shallow dimple around the stem instead of a narrow neck",
    "CI": "orchards, kitchen fruit bowls, grocery store shelves, lunch boxes and farm markets in autumn seasons",
}


def test_query_is_the_papers_prompt():
    text = query("DF", "apple", "pear", 25)
    assert text.startswith('Describe the key visual differences of a "apple" when compared to a "pear".')
    assert 'Do NOT include "Unlike a pear, a apple has".' in text and "approximately 25 words" in text
    assert 'where a "apple" is typically found.\n' in query("CI", "apple", None, 25)


def test_clean_and_frame():
    assert clean('Descriptive phrase for "apple": "a red fruit;  with\n a stem."') == "a red fruit; with a stem"
    assert frame_sentence("GA", "apple", None, "a red fruit; with a stem") == \
        "A apple typically appears as a red fruit, with a stem."
    assert frame_sentence("DF", "apple", "pear", "x") == "Unlike a pear, a apple has x."


@pytest.mark.parametrize("dim, phrase, reason", [
    ("GA", "", "empty"),
    ("GA", "red " * 80, "80 words"),
    ("GA", "I'm sorry, but I cannot describe a red round apple with a stem and shiny skin", "refusal"),
    ("GA", "A apple typically appears as a red round fruit with a stem and smooth shiny skin", "frame"),
    ("GA", "one two three four five six seven eight nine ten eleven twelve thirteen", "no visual word"),
    ("CI", "one two three four five six seven eight nine ten eleven twelve thirteen", "no place"),
    ("GA", "- a red fruit\n- a stem and some round shiny skin on it for sure", "list"),
])
def test_check_rejects(dim, phrase, reason):
    assert reason in check(dim, phrase, "apple", None, 25)


def test_check_accepts_good_phrases():
    assert all(check(d, p, "apple", "pear", 25, GOOD["GA"]) is None for d, p in GOOD.items())
    assert "same as the GA" in check("DF", GOOD["GA"], "apple", "pear", 25, GOOD["GA"])


def test_offline_kb_is_byte_identical_across_runs(tmp_path):
    for name in ("a.json", "b.json"):
        write_kb(build_kb("d", ["apple", "pear"], {"apple": "pear", "pear": "apple"}, OfflineTemplateBackend()),
                 tmp_path / name)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    kb = read_kb(tmp_path / "a.json")
    assert kb.sentences("apple")["DF"] == "Unlike a pear, a apple has its own distinctive appearance."
    assert kb.generator["backend"] == "offline-template-v1" and kb.confusion["partner"]["pear"] == "apple"


def test_rejected_replies_are_retried_then_fall_back():
    calls = []

    def llm(req):
        calls.append((req.dimension, req.attempt))
        if req.dimension == "FT":
            return "As an AI I cannot help"
        return GOOD[req.dimension] if req.attempt == 1 or req.dimension != "GA" else ""

    kb = build_kb("d", ["apple"], {"apple": "pear"}, CallableBackend(llm))
    ga, ft = kb.entries["apple"]["GA"], kb.entries["apple"]["FT"]
    assert ga["attempts"] == 2 and ga["valid"] and ga["rejected"] == ["empty"]
    assert ft["fallback"] and not ft["valid"] and ft["sentence"] == "A apple is used for the purposes a apple usually serves."
    assert ("FT", 1) in calls and ("FT", 2) not in calls  # one secondary attempt (max_retries 1)


def test_code_format_import(tmp_path):
    path = tmp_path / "merged.json"
    path.write_text(json.dumps({"apple": "A apple is red.; A apple is used for pies.", "pear": "P1; P2; P3; P4; P5; P6"}))
    kb = read_kb(path)
    assert list(kb.sentences("apple").values()) == ["A apple is red.", "A apple is used for pies."] + \
        ["A apple is used for pies."] * 3  # padded by repeating the last, as the code
    assert list(kb.sentences("pear").values()) == ["P1", "P2", "P3", "P4", "P5"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "mdpr-kb/v1", "classnames": ["a"], "dimensions": ["GA"], "entries": {}}', "lacks entries"),
    ('{"format": "mdpr-kb/v1", "classnames": ["a"], "dimensions": ["GA","FT","FA","DF","CI"], "entries": {"a": {}}}',
     "class 'a' lacks a sentence"),
    ('[1, 2]', "neither an mdpr-kb/v1 file"),
])
def test_malformed_kb_files(tmp_path, content, message):
    path = tmp_path / "kb.json"
    path.write_text(content)
    with pytest.raises(BenchError, match=message):
        read_kb(path)


def test_partners_hand_example():
    names = ["a", "b", "c"]
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    assert text_partners(names, text) == {"a": "b", "b": "a", "c": "b"}
    probs = torch.tensor([[0.5, 0.2, 0.3],    # a, predicted a
                          [0.5, 0.2, 0.3],    # a, predicted a: soft counts decide a's partner: c (0.6 > 0.4)
                          [0.1, 0.8, 0.1],    # b, predicted b
                          [0.3, 0.3, 0.4]])   # c, predicted c: tie b/a on hard (0) and soft (0.3): lower index a
    labels = torch.tensor([0, 0, 1, 2])
    assert zeroshot_partners(names, text, probs, labels) == {"a": "c", "b": "a", "c": "a"}
    hard = torch.tensor([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    assert zeroshot_partners(names, text, hard, labels)["a"] == "c"  # two hard confusions a -> c


class FakeLLM(BaseHTTPRequestHandler):
    """A local chat-completions endpoint: good answers, or junk for the first ``junk`` requests."""

    requests, junk, keys = [], 0, []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLLM.requests.append(body)
        FakeLLM.keys.append(self.headers.get("Authorization"))
        prompt = body["messages"][0]["content"]
        dim = next(d for d, key in (("DF", "differences"), ("FA", "fine-grained"), ("FT", "function"),
                                    ("CI", "environments"), ("GA", "appearance")) if key in prompt)
        reply = b"<html>oops</html>" if len(FakeLLM.requests) <= FakeLLM.junk else json.dumps(
            {"choices": [{"message": {"content": f'"{GOOD[dim]}."'}}]}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    FakeLLM.requests, FakeLLM.junk, FakeLLM.keys = [], 0, []
    httpd = HTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


def test_llm_backend_with_cache_makes_no_calls_on_rerun(server, tmp_path):
    cache = tmp_path / "replies.jsonl"
    llm = ResponseCache(OpenAICompatibleBackend(server, "qwen2.5", KEY, wait=0), cache)
    kb = build_kb("d", ["apple"], {"apple": "pear"}, llm)
    assert kb.sentences("apple")["GA"] == f"A apple typically appears as {GOOD['GA']}."
    assert len(FakeLLM.requests) == 5 and FakeLLM.requests[0]["temperature"] == 0.5
    assert FakeLLM.requests[0]["max_tokens"] == 75 and FakeLLM.keys[0] == f"Bearer {KEY}"
    again = ResponseCache(OpenAICompatibleBackend(server, "qwen2.5", KEY, wait=0), cache)
    assert build_kb("d", ["apple"], {"apple": "pear"}, again).entries == kb.entries
    assert len(FakeLLM.requests) == 5 and again.calls == 0
    strict = ResponseCache(None, cache, strict=True, model="qwen2.5")
    assert build_kb("d", ["apple"], {"apple": "pear"}, strict).entries == kb.entries
    with pytest.raises(BenchError, match="has no reply for class 'pear'"):
        build_kb("d", ["pear"], {"pear": "apple"}, strict)
    write_kb(kb, tmp_path / "kb.json")
    assert KEY not in (tmp_path / "kb.json").read_text() + cache.read_text()


def test_llm_junk_is_retried_then_an_error_and_answers_are_kept(server, tmp_path):
    FakeLLM.junk = 2
    cache = tmp_path / "replies.jsonl"
    backend = ResponseCache(OpenAICompatibleBackend(server, "m", KEY, retries=3, wait=0), cache)
    build_kb("d", ["apple"], {"apple": "pear"}, backend)  # two junk replies, then good ones
    assert len(FakeLLM.requests) == 7
    FakeLLM.junk = 10**6
    with pytest.raises(BenchError, match="failed 3 times .*kept in the response cache") as err:
        build_kb("d", ["apple", "pear"], {"apple": "pear", "pear": "apple"}, backend)
    assert KEY not in str(err.value) and KEY not in repr(backend.inner)
    assert len(cache.read_text().splitlines()) == 5  # apple's answers survive the failure


def test_llm_endpoint_down(tmp_path):
    backend = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", KEY, retries=2, wait=0, timeout=2)
    with pytest.raises(BenchError, match="failed 2 times .*cannot reach it"):
        build_kb("d", ["apple"], {"apple": "pear"}, ResponseCache(backend, tmp_path / "c.jsonl"))


def test_kb_build_cli(tmp_path, capsys, monkeypatch, server):
    out = tmp_path / "smoke.json"
    assert main(["kb", "build", "--dataset", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    kb = read_kb(out)
    assert kb.classnames[:2] == ["apple", "bicycle"] and kb.confusion["source"] == "zeroshot-train"
    b2n = tmp_path / "b2n.json"
    assert main(["kb", "build", "--dataset", "smoke_b2n", "--out", str(b2n), "--device", "cpu"]) == 0
    assert read_kb(b2n).confusion["source"] == "text-nearest" and len(read_kb(b2n).classnames) == 10
    monkeypatch.setenv("MDPR_LLM_BASE_URL", server)
    monkeypatch.setenv("MDPR_LLM_MODEL", "qwen2.5")
    monkeypatch.setenv("MDPR_LLM_API_KEY", KEY)
    llm = tmp_path / "llm.json"
    assert main(["kb", "build", "--dataset", "smoke", "--backend", "llm", "--out", str(llm), "--device", "cpu"]) == 0
    assert len(FakeLLM.requests) == 50 and KEY not in llm.read_text() + capsys.readouterr().out
    assert (tmp_path / "llm.responses.jsonl").exists()


def test_kb_stats_prints_the_prior_statistics_beside_mdpr_table_7(tmp_path, capsys):
    """M[c, v] = cos(sentence v of class c, "a photo of a {c}."), computed here from the encoder directly."""
    import numpy as np

    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    out = tmp_path / "smoke.json"
    assert main(["kb", "build", "--dataset", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["kb", "stats", str(out), "--dataset", "smoke", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    kb, backbone = read_kb(out), Runner(load_protocol("smoke"), RunOptions(device="cpu")).backbone()
    values = []
    for name in kb.classnames:
        anchor = backbone.encode_texts([f"a photo of a {name}."])[0].double().numpy()
        for sentence in kb.sentences(name).values():
            feature = backbone.encode_texts([sentence], normalize=False)[0].double().numpy()
            values.append(feature @ anchor / np.linalg.norm(feature) / np.linalg.norm(anchor))
    expected = f"{np.mean(values):.4f} | {np.std(values, ddof=1):.4f} | {np.median(values):.4f} |"
    assert lines[2].startswith("| smoke.json (bench-tiny-vit, 10 classes) | ") and lines[2].endswith(expected)
    assert lines[3] == "| Qwen2.5 knowledge base (MDPR Table 7, CIFAR-100) | 0.8371 | 0.0370 | 0.8452 |"
    assert len(values) == 50 and "DeepSeek-V3" in lines[5]


@pytest.mark.parametrize("argv, message", [
    (["--backend", "file"], "give it with --from FILE"),
    (["--backend", "file", "--from", "missing.json"], "does not exist"),
    (["--backend", "llm"], "set MDPR_LLM_BASE_URL and MDPR_LLM_MODEL"),
    (["--backend", "llm", "--strict-cache", "--cache", "none.jsonl"], "does not exist"),
])
def test_kb_build_cli_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MDPR_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("MDPR_LLM_MODEL", raising=False)
    assert main(["kb", "build", "--dataset", "smoke", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error:") and message in err and len(err.strip().splitlines()) == 1
