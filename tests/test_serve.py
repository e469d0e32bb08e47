"""The OpenAI-compatible server (doctorkit.serve) driven by the official `openai` client on 127.0.0.1:
names -> adapters, streaming, batching without mixing, every error status, cancellation, the audit log."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from serve_fixtures import ServerThread, make_lora_run, make_ptuning_run, one_line_exit

QUESTION = [{"role": "user", "content": "头痛怎么办？"}]
GREEDY = dict(temperature=0, max_tokens=12)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {"cardio": make_lora_run(root / "cardio", 0), "derm": make_lora_run(root / "derm", 1),
            "pt": make_ptuning_run(root / "pt"), "root": root}


@pytest.fixture(scope="module")
def server(runs):
    log = runs["root"] / "audit.jsonl"
    with ServerThread([str(runs["cardio"]), "--adapter", f"derm={runs['derm']}", "--adapter", f"pt={runs['pt']}",
                       "--audit-log", str(log)]) as srv:
        srv.log = log
        yield srv


def client(srv, key="unused"):
    return openai.OpenAI(base_url=srv.url, api_key=key, max_retries=0, timeout=120)


def ask(srv, model, messages=QUESTION, **kw):
    return client(srv).chat.completions.create(model=model, messages=messages, **{**GREEDY, **kw})


def audit_lines(path) -> list[dict]:
    if not path.exists():   # nothing logged yet
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_name_answers_with_its_own_adapter_and_the_run_matches_chat(server, runs):
    from doctorkit.generation import generate_reply
    from doctorkit.rundir import load_run

    names = [m.id for m in client(server).models.list()]
    assert sorted(names) == sorted(["cardio", "builtin:tiny", "derm", "pt"])
    replies = {name: ask(server, name) for name in names}
    texts = {name: r.choices[0].message.content for name, r in replies.items()}
    assert len(set(texts.values())) == 4, texts            # base, two LoRA adapters, a prefix: four models
    run = load_run(runs["cardio"])                         # chat's path: same template, same stop rules
    assert texts["cardio"] == generate_reply(run.model, run.tokenizer, QUESTION, temperature=0,
                                             repetition_penalty=1.1, max_new_tokens=12)
    with run.model.disable_adapter():
        assert texts["builtin:tiny"] == generate_reply(run.model, run.tokenizer, QUESTION, temperature=0,
                                                       repetition_penalty=1.1, max_new_tokens=12)
    prompt = len(run.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=True)["input_ids"])
    for r in replies.values():
        assert r.usage.prompt_tokens == prompt and r.usage.completion_tokens <= 12
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_sends_the_same_reply_in_pieces_then_done(server):
    whole = ask(server, "derm", max_tokens=20).choices[0].message.content
    chunks = list(client(server).chat.completions.create(model="derm", messages=QUESTION, temperature=0,
                                                         max_tokens=20, stream=True,
                                                         stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(pieces).strip() == whole and len([p for p in pieces if p]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens <= 20 and not chunks[-1].choices
    with httpx.stream("POST", server.url + "/chat/completions", json={"model": "derm", "messages": QUESTION,
                                                                       "max_tokens": 3, "stream": True}) as raw:
        lines = [line for line in raw.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_stop_strings_cut_the_reply(server):
    whole = ask(server, "cardio", max_tokens=20).choices[0].message.content
    stop = whole[3:5]
    cut = ask(server, "cardio", max_tokens=20, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == whole[:whole.find(stop)].strip()


def test_twenty_concurrent_requests_are_batched_and_never_mixed(server):
    models = ["cardio", "derm", "builtin:tiny", "pt"]
    jobs = [(models[i % 4], [{"role": "user", "content": f"第{i}位患者：咳嗽{i}天，发烧吗？"}]) for i in range(20)]
    alone = [ask(server, m, msgs).choices[0].message.content for m, msgs in jobs]   # one at a time
    batches = sum(b.batches for b in server.batchers.values())
    with ThreadPoolExecutor(max_workers=20) as pool:
        together = list(pool.map(lambda job: ask(server, *job).choices[0].message.content, jobs))
    batched = sum(b.batches for b in server.batchers.values()) - batches
    assert together == alone                      # each reply is its own request's, token for token
    assert batched < 20, f"{batched} generate() calls for 20 concurrent requests: nothing was batched"


def error_of(call) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    body = caught.value.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"} and "Traceback" not in body["error"]["message"]
    return caught.value


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server):
    c = client(server)
    assert error_of(lambda: ask(server, "nope")).status_code == 404
    assert error_of(lambda: ask(server, "cardio", max_tokens=5000)).status_code == 400
    assert error_of(lambda: ask(server, "cardio", messages=[])).status_code == 400
    long = [{"role": "user", "content": "头痛" * 3000}]          # over --max-prompt-tokens (2048)
    err = error_of(lambda: ask(server, "cardio", messages=long))
    assert err.status_code == 400 and err.code == "context_length_exceeded"
    assert error_of(lambda: ask(server, "cardio", messages=[{"role": "user", "content": "x" * 70_000}])).status_code == 400
    assert error_of(lambda: c.chat.completions.create(model="cardio", messages=[{"role": "robot", "content": "x"}])
                    ).status_code == 400
    raw = httpx.post(server.url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(server.url + "/nowhere").json()["error"]["message"]
    assert ask(server, "cardio").choices[0].message.content   # still serving


def test_keys_queue_full_queue_timeout_and_time_limit(runs, monkeypatch):
    key = "k-0123456789abcdef"
    monkeypatch.setenv("DK_TEST_KEYS", f"other-0123456789abcdef,{key}")
    # TARGET a base model this time, the run added as an adapter on it
    with ServerThread(["builtin:tiny", "--adapter", f"cardio={runs['cardio']}", "--api-key-env", "DK_TEST_KEYS",
                       "--queue-size", "1", "--max-batch", "1",
                       "--queue-timeout", "0.5", "--audit-log", str(runs["root"] / "keys.jsonl")]) as srv:
        assert error_of(lambda: client(srv, "wrong-key").models.list()).status_code == 401
        assert httpx.get(srv.url + "/models").status_code == 401
        assert [m.id for m in client(srv, key).models.list()] == ["builtin:tiny", "cardio"]
        gate = threading.Event()
        (batcher,) = srv.batchers.values()
        run_batch = batcher._run
        monkeypatch.setattr(batcher, "_run", lambda batch: (gate.wait(30), run_batch(batch)))
        call = lambda: client(srv, key).chat.completions.create(model="cardio", messages=QUESTION, **GREEDY)  # noqa: E731
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(call)          # taken by the (held) worker
            time.sleep(0.5)
            waiting = pool.submit(call)          # the one queue place
            time.sleep(0.3)
            assert error_of(call).status_code == 429
            time.sleep(0.5)                      # the waiting one is now over --queue-timeout
            gate.set()
            assert running.result().choices[0].message.content
            with pytest.raises(openai.APIStatusError) as late:
                waiting.result()
            assert late.value.status_code == 503
        monkeypatch.setattr(batcher, "_run", run_batch)
        batcher.time_limit = 0.0                 # every reply hits the generation time limit at once
        cut = client(srv, key).chat.completions.create(model="cardio", messages=QUESTION, temperature=0, max_tokens=50)
        assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens < 50
    lines = audit_lines(runs["root"] / "keys.jsonl")
    assert sorted(line["status"] for line in lines) == sorted([401, 401, 200, 429, 200, 503, 200])  # one per request
    assert all(key not in json.dumps(line) for line in lines)
    assert {line["key_id"] for line in lines if line["status"] == 200} == {lines[2]["key_id"]} and lines[2]["key_id"]


def test_a_client_that_hangs_up_stops_its_generation(server):
    before = len(audit_lines(server.log))
    with httpx.stream("POST", server.url + "/chat/completions",
                      json={"model": "cardio", "messages": QUESTION, "max_tokens": 1000, "stream": True,
                            "temperature": 0, "repetition_penalty": 1.0}) as raw:
        for _ in zip(range(3), raw.iter_lines()):
            pass
    deadline = time.monotonic() + 30
    while len(audit_lines(server.log)) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    line = audit_lines(server.log)[-1]
    assert line["status"] == 499 and line["completion_tokens"] < 1000


def test_audit_log_has_one_line_per_request_and_no_content(server):
    before = audit_lines(server.log)
    ask(server, "pt")
    with pytest.raises(openai.NotFoundError):
        ask(server, "nope")
    client(server).models.list()
    lines = audit_lines(server.log)
    assert len(lines) == len(before) + 3
    assert [(x["model"], x["status"]) for x in lines[-3:]] == [("pt", 200), ("nope", 404), (None, 200)]
    assert lines[-3]["completion_tokens"] > 0 and "messages" not in lines[-3] and "头痛" not in json.dumps(lines)


def test_knowledge_grounds_unless_turned_off_and_content_is_logged_through_one_function(runs, monkeypatch):
    import doctorkit.serve.audit as audit
    from doctorkit.generation import prompt_token_ids
    from doctorkit.knowledge import KnowledgeSettings, grounder
    from doctorkit.recipe import DataConfig
    from doctorkit.rundir import load_run

    kb_path = Path(__file__).resolve().parents[1] / "data" / "knowledge_zh.jsonl"
    monkeypatch.setattr(audit, "loggable_content", lambda text: f"<scrubbed {len(text)}>")
    log = runs["root"] / "content.jsonl"
    question = [{"role": "user", "content": "医生您好，我一边脑袋跳着疼，还怕光，怎么办？"}]   # 偏头痛 in the KB
    with ServerThread([str(runs["cardio"]), "--audit-log", str(log), "--log-content", "--knowledge", str(kb_path)]) as srv:
        grounded = ask(srv, "cardio", question)
        plain = ask(srv, "cardio", question, extra_body={"knowledge": False})
    tokenizer = load_run(runs["cardio"]).tokenizer
    settings = KnowledgeSettings.from_data_config(DataConfig(knowledge=str(kb_path)))   # the run's defaults
    messages, hits = grounder(settings, tokenizer)(question)
    assert hits and grounded.usage.prompt_tokens == len(prompt_token_ids(tokenizer, messages))
    assert plain.usage.prompt_tokens == len(prompt_token_ids(tokenizer, question)) < grounded.usage.prompt_tokens
    first, second = audit_lines(log)
    assert first["messages"] == [{"role": "user", "content": f"<scrubbed {len(question[0]['content'])}>"}]
    assert first["reply"] == f"<scrubbed {len(grounded.choices[0].message.content)}>"


def test_logged_content_is_de_identified():
    from doctorkit.serve.audit import loggable_content

    logged = loggable_content("医生您好，我是王建国，电话138 1234 5678，身份证110101199003077777。我头痛三天了。")
    assert "王建国" not in logged and "5678" not in logged and "110101" not in logged
    assert "头痛三天" in logged and "【电话1】" in logged


# ------------------------------------------------------------------------ bad input at start, one line ---

def serve_error(argv, capsys) -> str:
    from doctorkit.serve import run
    return one_line_exit(run, argv, capsys)


def test_unsafe_or_broken_starts_are_one_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DK_NO_SUCH_KEY", raising=False)
    assert "set --api-key-env" in serve_error([str(runs["cardio"]), "--host", "0.0.0.0"], capsys)
    assert "unset or empty" in serve_error([str(runs["cardio"]), "--api-key-env", "DK_NO_SUCH_KEY"], capsys)
    monkeypatch.setenv("DK_SHORT", "abc")
    assert "at least 16" in serve_error([str(runs["cardio"]), "--api-key-env", "DK_SHORT"], capsys)
    assert "not found" in serve_error([str(tmp_path / "gone")], capsys)
    assert "expected NAME=RUN_DIR" in serve_error([str(runs["cardio"]), "--adapter", "derm"], capsys)
    assert "run directory not found" in serve_error([str(runs["cardio"]), "--adapter", f"x={tmp_path / 'no'}"], capsys)
    assert "--max-tokens must be positive" in serve_error([str(runs["cardio"]), "--max-tokens", "0"], capsys)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert "cannot listen there" in serve_error([str(runs["cardio"]), "--port", port], capsys)


# --------------------------------------------------------------------------- vLLM: pre-flight and argv ---

def vllm_run(src, dst, base_dir, rank=64, **adapter_config):
    """A copy of a run whose recipe names a real base folder (vLLM cannot load builtin:tiny)."""
    import shutil

    shutil.copytree(src, dst)
    text = (dst / "recipe.yaml").read_text(encoding="utf-8").replace("model: builtin:tiny", f"model: {base_dir}")
    (dst / "recipe.yaml").write_text(text, encoding="utf-8")
    config_path = dst / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**config, "r": rank, **adapter_config}), encoding="utf-8")
    return dst


def test_vllm_preflight_and_exact_command(runs, tmp_path, capsys):
    from doctorkit.serve import run
    from doctorkit.builtin.tiny import build_tiny

    base = tmp_path / "Qwen-tiny"
    build_tiny()[0].save_pretrained(base)    # config.json says Qwen2ForCausalLM
    cardio = vllm_run(runs["cardio"], tmp_path / "cardio", base, rank=64)
    derm = vllm_run(runs["derm"], tmp_path / "derm", base, rank=8)
    with pytest.raises(SystemExit) as done:
        run([str(cardio), "--adapter", f"derm={derm}", "--engine", "vllm", "--dry-run", "--port", "9000",
             "--tensor-parallel-size", "2"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip().split(" ") == [
        "vllm", "serve", str(base), "--host", "127.0.0.1", "--port", "9000", "--served-model-name", "Qwen-tiny",
        "--tokenizer", str(cardio / "tokenizer"), "--chat-template", str(cardio / "tokenizer" / "chat_template.jinja"),
        "--enable-lora", "--lora-modules", f"cardio={cardio / 'adapter'}", f"derm={derm / 'adapter'}",
        "--max-lora-rank", "64", "--max-loras", "2", "--tensor-parallel-size", "2"]
    run_pt = [str(cardio), "--engine", "vllm", "--dry-run", "--adapter"]
    pt = tmp_path / "pt"
    import shutil
    shutil.copytree(runs["pt"], pt)
    (pt / "recipe.yaml").write_text((pt / "recipe.yaml").read_text().replace("builtin:tiny", str(base)))
    assert "serve it with the built-in engine" in serve_error([*run_pt, f"pt={pt}"], capsys)
    saved = vllm_run(runs["derm"], tmp_path / "saved", base, modules_to_save=["lm_head"])
    assert "modules_to_save" in serve_error([str(saved), "--engine", "vllm", "--dry-run"], capsys)
    assert "builtin model" in serve_error([str(runs["cardio"]), "--engine", "vllm", "--dry-run"], capsys)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "architectures": ["FancyForCausalLM"]}))
    assert "FancyForCausalLM" in serve_error([str(cardio), "--engine", "vllm", "--dry-run"], capsys)
