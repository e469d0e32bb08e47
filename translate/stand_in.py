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

GLOSSARY = {
    "doctor": "医生", "patient": "患者", "i": "我", "you": "你", "my": "我的", "your": "你的", "we": "我们",
    "have": "有", "has": "有", "been": "", "am": "是", "is": "是", "are": "是", "it": "它", "this": "这", "that": "那",
    "and": "和", "or": "或", "but": "但是", "not": "不", "no": "没有", "with": "伴有", "for": "为了", "of": "的",
    "the": "", "a": "一个", "an": "一个", "to": "", "in": "在", "on": "在", "at": "在", "by": "通过", "be": "",
    "what": "什么", "how": "如何", "why": "为什么", "should": "应该", "can": "可以", "could": "可能", "may": "可能",
    "need": "需要", "do": "做", "take": "服用", "taking": "服用", "feel": "感觉", "feeling": "感觉", "see": "看",
    "experiencing": "出现", "suffering": "患有", "problem": "问题", "help": "帮助", "recommend": "建议",
    "pain": "疼痛", "headache": "头痛", "fever": "发烧", "cough": "咳嗽", "cold": "感冒", "flu": "流感",
    "nausea": "恶心", "vomiting": "呕吐", "diarrhea": "腹泻", "dizziness": "头晕", "fatigue": "疲劳",
    "rash": "皮疹", "itching": "瘙痒", "swelling": "肿胀", "bleeding": "出血", "infection": "感染",
    "blood": "血", "pressure": "压力", "sugar": "糖", "heart": "心脏", "chest": "胸部", "stomach": "胃",
    "head": "头", "back": "背部", "throat": "喉咙", "skin": "皮肤", "eye": "眼睛", "eyes": "眼睛", "ear": "耳朵",
    "leg": "腿", "legs": "腿", "arm": "手臂", "joint": "关节", "joints": "关节", "lung": "肺", "lungs": "肺",
    "liver": "肝脏", "kidney": "肾脏", "bone": "骨", "muscle": "肌肉", "nerve": "神经", "brain": "大脑",
    "test": "检查", "tests": "检查", "examination": "检查", "scan": "扫描", "biopsy": "活检", "x-ray": "X光",
    "medication": "药物", "medications": "药物", "medicine": "药", "drug": "药物", "drugs": "药物",
    "treatment": "治疗", "therapy": "治疗", "surgery": "手术", "diagnosis": "诊断", "symptoms": "症状",
    "symptom": "症状", "disease": "疾病", "condition": "病情", "disorder": "障碍", "chronic": "慢性",
    "acute": "急性", "severe": "严重", "mild": "轻微", "sudden": "突然", "frequent": "频繁", "daily": "每天",
    "day": "天", "days": "天", "week": "周", "weeks": "周", "month": "月", "months": "月", "year": "年",
    "years": "年", "times": "次", "mg": "毫克", "dose": "剂量", "tablet": "片", "tablets": "片",
    "hospital": "医院", "emergency": "急诊", "also": "也", "very": "非常", "more": "更多", "some": "一些",
    "any": "任何", "other": "其他", "possible": "可能", "likely": "很可能", "based": "根据", "sounds": "听起来",
    "like": "像", "rule": "排除", "out": "", "cause": "原因", "causes": "原因", "causing": "导致",
    "well": "嗯", "yes": "是的", "thank": "谢谢", "thanks": "谢谢", "please": "请", "answer": "回答",
    "question": "问题", "questions": "问题", "medical": "医疗", "description": "描述", "if": "如果",
    "diabetes": "糖尿病", "hypertension": "高血压", "asthma": "哮喘", "cancer": "癌症", "allergy": "过敏",
    "anxiety": "焦虑", "depression": "抑郁", "insomnia": "失眠", "panic": "惊恐", "attacks": "发作",
}
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
