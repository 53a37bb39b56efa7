"""Hostile input, round two: resource bombs, deep nesting, silent misreadings, files and folders,
leftovers and permissions, secrets and missing extras; and a property-based test per input surface."""
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bench.core.atomic as atomic
from bench.cli import main
from bench.config.protocol import load_protocol
from bench.core.errors import BenchError, message_of
from bench.core.safeyaml import MAX_DEPTH, load_json, load_yaml
from bench.records.schema import SCHEMA, read_record
from test_overrides import one_error, run  # noqa: E402  (the CLI helpers)

DEEP = 200_000
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
    for i in range(1, 9))  # 10**9 strings once expanded, 600 bytes written


def smoke_text() -> str:
    return load_protocol("smoke").path.read_text()


# --- resource bombs -----------------------------------------------------------------------------

def test_alias_bombs_are_refused_before_they_expand(capsys, tmp_path):
    protocol = tmp_path / "bomb.yaml"
    protocol.write_text(smoke_text() + BOMB.replace("a", "zz"))  # unknown top-level keys, never built
    assert "expands to more than" in one_error(capsys, "show", str(protocol))
    value = "&a [x, x, x, x, x, x, x, x, x, x]"
    nested = "[" + ", ".join(["*a"] * 10) + "]"
    bomb_value = "{a: " + value + ", b: &b " + nested + ", c: [" + ", ".join(["*b"] * 10) + "]}"
    assert "expands to more than" not in str(load_yaml(bomb_value, "x"))  # 111 values: fine
    deep_value = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x, x]"] + [
        "&a%d [%s]" % (i, ", ".join(["*a" if i == 1 else "*a%d" % (i - 1)] * 10)) for i in range(1, 9)]) + "]"
    assert "expands to more than" in one_error(capsys, "show", "smoke", "--method", "coop", "--set",
                                               f"coop.n_ctx={deep_value}")
    spec = tmp_path / "spec.yaml"
    spec.write_text(BOMB + "title: *a8\ncolumns: [smoke]\n")
    assert "expands to more than" in one_error(capsys, "report", str(spec))


def test_error_lines_quote_a_bounded_part_of_any_value(capsys, tmp_path):
    protocol = tmp_path / "long.yaml"
    protocol.write_text(smoke_text().replace("family: lt", "family: " + "x" * 500_000))
    err = one_error(capsys, "show", str(protocol))
    assert "protocol.family" in err and "characters left out" in err


# --- deep nesting -------------------------------------------------------------------------------

def deep_json() -> str:
    return "[" * DEEP + "]" * DEEP


def test_deeply_nested_input_is_one_line_or_a_set_aside_cache(capsys, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json(deep_json())
    protocol = tmp_path / "deep.yaml"
    protocol.write_text("a: " + "[" * 1000 + "]" * 1000 + "\n")
    assert "nested more than" in one_error(capsys, "show", str(protocol))
    spec = tmp_path / "spec.yaml"
    spec.write_text("title: " + "[" * DEEP)
    assert "nested" in one_error(capsys, "report", str(spec))
    kb = tmp_path / "kb.json"
    kb.write_text(deep_json())
    assert "is not valid JSON (nested too deeply)" in one_error(
        capsys, "kb", "build", "--dataset", "smoke", "--backend", "file", "--from", str(kb), "--out", str(tmp_path / "o.json"))


def test_a_deep_result_view_and_index_are_damaged_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "2", "--results-dir",
               str(results), "--no-progress")[0] == 0
    first = sorted(results.glob("smoke/zeroshot/*/seed-1.json"))[0]
    first.write_text(deep_json())
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results))
    assert code == 0 and "| zeroshot | 1 |" in out and "nested too deeply" in err
    from bench.config.catalog import cache_root
    assert run(capsys, "report", "smoke", "--results-dir", str(results))[0] == 0  # writes the results index
    for cached in [*cache_root().glob("protocol-views/*.json"), *cache_root().glob("results-index/*.json")]:
        cached.write_text(deep_json())
    code, out, err = run(capsys, "report", "smoke", "--results-dir", str(results))
    assert code == 0 and "is damaged (nested too deeply)" in err and "Traceback" not in err
    assert list(cache_root().glob("protocol-views/*.corrupt")) and list(cache_root().glob("results-index/*.corrupt"))
    code, out, err = run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1",
                         "--results-dir", str(results), "--no-progress")
    assert code == 0 and "1 ran" in out and first.with_name("seed-1.json.corrupt").exists()


def test_a_deep_cached_llm_reply_is_dropped_and_fetched_again(tmp_path):
    from bench.kb.backends import CallableBackend, KBRequest, ResponseCache

    cache = tmp_path / "replies.jsonl"
    cache.write_text(deep_json() + "\n")
    backend = ResponseCache(CallableBackend(lambda req: "a reply"), cache)
    assert backend.generate(KBRequest("apple", "GA", None, "prompt")) == "a reply" and backend.calls == 1


# --- silent misreadings -------------------------------------------------------------------------

def record(metrics) -> dict:
    return {"schema": SCHEMA, "key": "k" * 64, "protocol": "smoke", "method": "coop", "seed": 1,
            "code_version": "0", "config": {}, "metrics": metrics}


@pytest.mark.parametrize("metrics", [{"all": True}, {"all": 50, "many": False}, {"all": "50"}, {"all": 101},
                                     {"all": -1}, {"all": [50]}])
def test_a_metric_of_the_wrong_type_is_not_read_as_a_number(tmp_path, metrics):
    path = tmp_path / "seed-1.json"
    path.write_text(json.dumps(record(metrics)))
    data, problem = read_record(path)
    assert data is None and problem


def test_a_true_metric_is_skipped_by_the_leaderboard_with_a_warning(capsys, tmp_path):
    results = tmp_path / "results"
    assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "2", "--results-dir",
               str(results), "--no-progress")[0] == 0
    path = sorted(results.glob("smoke/zeroshot/*/seed-1.json"))[0]
    data = json.loads(path.read_text())
    data["metrics"]["all"] = True
    path.write_text(json.dumps(data))
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results))
    assert code == 0 and "| zeroshot | 1 |" in out and "not numbers of their range: all" in err


def test_a_key_given_twice_is_an_error_naming_both_lines(capsys, tmp_path):
    protocol = tmp_path / "twice.yaml"
    protocol.write_text(smoke_text() + "train:\n  batch_size: 32\ntrain:\n  epochs: 2\n")
    err = one_error(capsys, "show", str(protocol))
    assert "key 'train' appears twice in one mapping (lines" in err
    first = next(i for i, line in enumerate(smoke_text().splitlines(), 1) if line.startswith("train:"))
    assert f"(lines {first} and {smoke_text().count(chr(10)) + 1})" in err
    assert load_yaml("a: 1\n<<: {b: 2}\nb: 3\n", "x") == {"a": 1, "b": 3}  # a merge key may be overridden
    assert load_yaml('1: a\n"1": b\n', "x") == {1: "a", "1": "b"}  # a number and a text are two keys


def test_an_option_given_twice_is_refused_and_numbers_have_ranges(capsys):
    assert "--seeds is given twice" in one_error(capsys, "run", "--protocol", "smoke", "--method", "coop",
                                                 "--seeds", "1", "--seeds", "2")
    assert "--device is given twice" in one_error(capsys, "run", "--protocol", "smoke", "--method", "coop",
                                                  "--device", "cpu", "--device", "cuda")
    assert "expected a whole number from 1 to 500, got '-5'" in one_error(capsys, "kb", "build", "--dataset", "smoke",
                                                                          "--words", "-5")
    assert "from 0 to 20" in one_error(capsys, "kb", "build", "--dataset", "smoke", "--max-retries", "99")
    assert "expected a whole number from 0" in one_error(capsys, "run", "--protocol", "smoke", "--method", "coop",
                                                         "--seeds", "-1")
    code, _, _ = run(capsys, "report", "smoke", "--set", "protocol.eval.batch_size=8", "--set", "protocol.seeds=[1]",
                     "--results-dir", "/nonexistent")  # append options repeat on purpose
    assert code == 2


# --- files and folders --------------------------------------------------------------------------

def test_kb_out_that_cannot_be_written_is_one_line(capsys, tmp_path):
    assert "is a folder; give a file name" in one_error(capsys, "kb", "build", "--dataset", "smoke", "--out",
                                                         str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write in" in one_error(capsys, "kb", "build", "--dataset", "smoke", "--out",
                                          str(blocker / "kb.json"))


def test_a_result_that_cannot_be_renamed_aside_is_a_warning(capsys, tmp_path, monkeypatch):
    from bench.engine.store import ResultStore

    store = ResultStore(tmp_path)
    path = store.result_path("smoke", "coop", "k" * 64, 1)
    path.parent.mkdir(parents=True)
    path.write_text("{trunc")

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    assert store.load("smoke", "coop", "k" * 64, 1) is None
    err = capsys.readouterr().err
    assert err.startswith("bench: warning: ") and "left in place (its folder does not allow renaming it)" in err


def test_a_symlink_loop_in_a_class_folder_is_named_and_the_rest_checked(tmp_path):
    from bench.data.folder_lt import missing_files

    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"x")
    os.symlink("loop.jpg", folder / "loop.jpg")  # points at itself
    missing = missing_files(str(tmp_path), [f"train/cat/{n}" for n in ("0.jpg", "1.jpg", "2.jpg", "loop.jpg")])
    assert missing == [f"{tmp_path}/train/cat/loop.jpg (a symlink loop)"]


def test_a_corrupt_image_read_by_a_loader_worker_is_named_plainly(tmp_path):
    import torch.utils.data

    from bench.data.folder_lt import ListedImages

    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    images = ListedImages(str(tmp_path), ["bad.jpg"], [0], "Places-LT")
    loader = torch.utils.data.DataLoader(images, batch_size=1, num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(BenchError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)  # what torch hands back
    message = message_of(info.value)
    assert message.startswith(f"Places-LT: image '{tmp_path / 'bad.jpg'}' cannot be read (cannot identify image")
    assert "\n" not in message and "Traceback" not in message and len(message) < 400


# --- leftovers and permissions ------------------------------------------------------------------

def test_temp_files_of_dead_writers_are_removed_when_the_folder_is_next_written(tmp_path):
    script = (f"import sys, time; sys.path.insert(0, {str(os.getcwd())!r}); from bench.core.atomic import write_atomic\n"
              f"write_atomic({str(tmp_path / 'seed-1.json')!r}, lambda f: (f.write('{{'), f.flush(), time.sleep(60)))")
    writer = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(200):
        if list(tmp_path.glob(".seed-1.json.*.tmp")):
            break
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert len(list(tmp_path.glob(".seed-1.json.*.tmp"))) == 1  # what SIGKILL leaves
    live = tmp_path / f".seed-2.json.{atomic.HOST}~{os.getpid()}.abc.tmp"  # a writer still at work
    live.write_text("{")
    atomic._swept.discard(str(tmp_path))
    atomic.write_json(tmp_path / "seed-3.json", {"a": 1})
    assert [p.name for p in tmp_path.glob(".*.tmp")] == [live.name]


def test_written_files_honour_the_umask(tmp_path, monkeypatch):
    atomic.write_json(tmp_path / "a.json", {})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~atomic.UMASK
    monkeypatch.setattr(atomic, "UMASK", 0o027)
    atomic.write_json(tmp_path / "b.json", {})
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640


# --- secrets ------------------------------------------------------------------------------------

class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []
    redirect_to = ""

    def log_message(self, *args):
        pass

    def answer(self):
        Recorder.seen.append((self.server.server_port, self.command, self.headers.get("Authorization")))
        if self.redirect_to and self.server.server_port != int(self.redirect_to.split(":")[2].split("/")[0]):
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"message": {"content": "ok"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


def serve():
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.mark.slow  # an HTTP server and its time-outs
def test_the_key_never_follows_a_redirect_to_another_origin():
    from bench.kb.backends import KBRequest, OpenAICompatibleBackend

    origin, other = serve(), serve()
    try:
        Recorder.seen, Recorder.redirect_to = [], f"http://127.0.0.1:{other.server_port}/steal"
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{origin.server_port}/v1", "m", "SECRET-KEY", retries=2,
                                          wait=0.01)
        with pytest.raises(BenchError) as info:
            backend.generate(KBRequest("apple", "GA", None, "prompt"))
        assert "answered with a redirect" in str(info.value) and "SECRET-KEY" not in str(info.value)
        assert [port for port, _, _ in Recorder.seen] == [origin.server_port]  # nothing reached the other host
    finally:
        origin.shutdown()
        other.shutdown()


def test_a_key_in_the_endpoint_url_is_never_printed(capsys, monkeypatch):
    from bench.kb.backends import redact_url

    monkeypatch.setenv("MDPR_LLM_BASE_URL", "http://user:SECRET-KEY@127.0.0.1:9/v1")
    monkeypatch.setenv("MDPR_LLM_MODEL", "m")
    err = one_error(capsys, "kb", "build", "--dataset", "smoke", "--backend", "llm", "--out", "/tmp/unused-kb.json")
    assert "SECRET-KEY" not in err and "http://***@127.0.0.1:9/v1" in err
    for url in ("http://user:p@ss@host/v1", "http://tok:se cret@host/v1", "http://user:pa/ss@host/v1"):
        assert redact_url(url) == "http://***@host/v1"
        monkeypatch.setenv("MDPR_LLM_BASE_URL", url)
        assert "holds credentials (http://***@host/v1)" in one_error(capsys, "kb", "build", "--dataset", "smoke",
                                                                     "--backend", "llm", "--out", "/tmp/unused.json")


# --- optional extras ----------------------------------------------------------------------------

def test_report_without_the_report_extra_is_one_line(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    err = one_error(capsys, "report", "smoke")
    assert "missing: scipy" in err and "pip install 'lt-prompt-bench[report]'" in err


# --- properties: every input surface ------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=8))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=20)
yaml_texts = st.one_of(
    trees.map(lambda t: yaml.safe_dump(t)),
    st.text(alphabet="ab:-[]{}&*!|>#'\"\n ,?0123456789", max_size=60),
    st.integers(1, 3 * MAX_DEPTH).map(lambda n: "a: " + "[" * n + "]" * n),
    st.integers(2, 30).map(lambda n: "x: &a [1]\n" + "".join(f"y{i}: *a\n" for i in range(n)) + "x: 2\n"))


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_texts)
def test_property_any_protocol_text_is_a_protocol_or_one_error(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(smoke_text() + "\n" + text if text.startswith(("a:", "x:")) else text)
    try:
        load_protocol(str(path))
    except BenchError as err:  # anything else (a traceback) fails the test
        assert str(err).startswith(("protocol", "unknown protocol")), str(err)[:200]


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=40, deadline=None)
@given(raw=st.one_of(st.text(max_size=40), yaml_texts), target=st.sampled_from(
    ["coop.n_ctx", "coop.train.lr", "protocol.eval.batch_size", "protocol.backbone.seed", "protocol.seeds"]))
def test_property_any_set_value_shows_or_is_one_error(raw, target):
    code = main(["show", "smoke", "--method", "coop", "--set", f"{target}={raw}"])
    assert code in (0, 2)


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metrics=st.dictionaries(st.sampled_from(["all", "many", "few", "hm", "x"]), trees, max_size=4),
       extra=st.dictionaries(st.sampled_from(["seed", "key", "config", "schema"]), trees, max_size=2))
def test_property_a_record_is_read_with_numeric_metrics_or_refused(tmp_path, metrics, extra):
    path = tmp_path / "seed-1.json"
    path.write_text(json.dumps({**record(metrics), **extra}, allow_nan=True))
    data, problem = read_record(path)
    if data is not None:
        assert problem is None
        assert all(v is None or (type(v) in (int, float) and 0 <= v <= 100) for v in data["metrics"].values())


@pytest.mark.slow  # fuzzing: tens to hundreds of examples
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.one_of(yaml_texts, st.fixed_dictionaries({"title": trees, "columns": trees}, optional={
    "rows": trees, "metrics": trees, "reference": trees, "digits": trees, "std": trees}).map(yaml.safe_dump)))
def test_property_any_report_spec_loads_or_is_one_error(tmp_path, spec):
    from bench.reporting.reportspec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    try:
        load_spec(str(path))
    except BenchError:
        pass


# --- found in review ----------------------------------------------------------------------------

def test_a_yaml_value_yaml_cannot_build_is_one_line(capsys, tmp_path):
    protocol = tmp_path / "date.yaml"
    protocol.write_text(smoke_text() + "seeds_note: 2024-13-45\n")
    assert "a value YAML cannot build (month must be in 1..12)" in one_error(capsys, "show", str(protocol))
    code, out, _ = run(capsys, "show", "smoke", "--method", "coop", "--set", "protocol.label=2024-13-45")
    assert code == 0  # a --set value YAML cannot build stays text


def test_the_same_set_path_twice_is_refused(capsys):
    assert "set the same field" in one_error(capsys, "show", "smoke", "--set", "protocol.backbone.seed=1",
                                             "--set", "protocol.backbone.seed=2")
    assert "set the same field" in one_error(capsys, "show", "smoke", "--set", "protocol.backbone={name: x}",
                                             "--set", "protocol.backbone.seed=2")
    assert "is given twice" in one_error(capsys, "show", "smoke", "--method", "coop", "--set", "coop.n_ctx=2",
                                         "--set", "coop.n_ctx=4")


def test_an_endpoint_that_answers_garbage_is_retried_then_one_error():
    import socketserver

    from bench.kb.backends import KBRequest, OpenAICompatibleBackend

    class Garbage(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)
            self.request.sendall(b"garbage\r\n\r\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", "K", retries=2,
                                          wait=0.01)
        with pytest.raises(BenchError, match="failed 2 times .* cannot reach it"):
            backend.generate(KBRequest("apple", "GA", None, "prompt"))
    finally:
        server.shutdown()
        server.server_close()


def test_two_columns_of_one_protocol_read_their_own_seeds(capsys, tmp_path):
    results = str(tmp_path / "results")
    assert run(capsys, "run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "2", "--results-dir",
               results, "--no-progress")[0] == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"title": "T", "rows": ["coop"], "average": False, "metrics": ["all"], "columns": [
        {"protocols": "smoke", "label": "two"}, {"protocols": "smoke", "set": {"seeds": [1]}, "label": "one"}]}))
    code, out, err = run(capsys, "report", str(spec), "--results-dir", results)
    row = next(line for line in out.splitlines() if line.startswith("| CoOp"))
    two, one = [cell.strip() for cell in row.split("|")[3:5]]
    assert code == 0 and "±" in two and "±" not in one, row


@pytest.mark.slow  # builds knowledge bases
def test_a_kb_built_for_an_override_gets_its_own_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "kb", "build", "--dataset", "smoke")
    assert code == 0 and (tmp_path / "kb" / "smoke.json").exists()
    code, out, _ = run(capsys, "kb", "build", "--dataset", "smoke", "--set", "protocol.backbone.seed=7")
    assert code == 0 and len(list((tmp_path / "kb").glob("smoke.*.json"))) == 1


def test_relative_data_roots_are_relative_to_their_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    roots = tmp_path / "conf" / "data.yaml"
    roots.write_text("places_lt: ../places\n")
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(roots))
    monkeypatch.chdir("/")
    assert load_protocol("places_lt").dataset.root == str(tmp_path / "conf" / "../places")
