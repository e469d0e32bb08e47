"""A local stand-in teacher: an OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1.

It "translates" word by word with a small medical glossary written for DoctorKit (unknown words, drug
names and numbers stay as they are), so it is deterministic, free and offline. It is NOT a translator:
it lets the tests and the README walk the whole pipeline without an API key, and it can inject faults
(429, 500, a hang past the client's timeout, a garbage body, an empty reply, a dropped connection) to
prove the retries. It counts every request and every billed (successful) reply per source text.

    python -m translate.stand_in --port 8765     # then teacher.base_url: http://127.0.0.1:8765/v1
"""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from doctorkit import argtypes
from translate.glossary import GLOSSARY

PUNCTUATION = {".": "。", ",": "，", "?": "？", "!": "！", ";": "；", ":": "：", "(": "（", ")": "）"}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z\-']*|\d+(?:\.\d+)?%?|\S")


def fake_translate(text: str) -> str:
    out: list[str] = []
    for token in _TOKEN.findall(text):
        word = GLOSSARY.get(token.lower(), token if token[0].isalnum() else PUNCTUATION.get(token, token))
        if out and word and word[0].isascii() and word[0].isalnum() and out[-1][-1:].isascii() \
                and out[-1][-1:].isalnum():
            out.append(" ")  # keep kept-English words and numbers apart
        out.append(word)
    return "".join(out) or text


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, delay_s: float = 0.0, hang_s: float = 2.0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay_s, self.hang_s = delay_s, hang_s
        self.faults: list[str] = []        # consumed one per request: 429 500 timeout garbage empty drop
        self.requests = 0                  # every request, faulty or not
        self.billed: Counter = Counter()   # source text -> successful (paid) replies
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> "StandInServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: tests and the README run read our own output
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        server: StandInServer = self.server
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with server.lock:
            server.requests += 1
            fault = server.faults.pop(0) if server.faults else None
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, b'{"error": {"message": "not found"}}')
        if fault == "drop":
            self.close_connection = True
            return  # nothing written: the client sees the server hang up
        if fault in ("429", "500"):
            return self._send(int(fault), b'{"error": {"message": "injected fault"}}', {"Retry-After": "0"})
        if fault == "garbage":
            return self._send(200, b"<html>upstream proxy error{")
        if fault == "timeout":
            time.sleep(server.hang_s)
        time.sleep(server.delay_s)
        messages = request.get("messages", [])
        source = messages[-1]["content"] if messages else ""
        translation = "" if fault == "empty" else fake_translate(source)
        prompt_chars = sum(len(m.get("content", "")) for m in messages)
        body = {"id": "chatcmpl-stand-in", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", "stand-in"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": translation}}],
                # rough token counts (4 English characters, 1 Chinese character a token) for the cost report
                "usage": {"prompt_tokens": prompt_chars // 4 + 8, "completion_tokens": len(translation),
                          "total_tokens": prompt_chars // 4 + 8 + len(translation)}}
        try:
            self._send(200, json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (timeout): not delivered, not billed
        if fault is None:
            with server.lock:
                server.billed[source] += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m translate.stand_in", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=argtypes.port_number, default=8765)
    parser.add_argument("--delay", type=argtypes.non_negative_float, default=0.0, help="seconds per reply (to watch progress)")
    args = parser.parse_args(argv)
    server = StandInServer(args.port, delay_s=args.delay)
    print(f"stand-in teacher on {server.base_url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
