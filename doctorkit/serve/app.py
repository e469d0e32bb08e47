"""The HTTP side: OpenAI-compatible routes over the batchers (GET /v1/models, POST /v1/chat/completions,
GET /health). Every /v1 request writes one audit line, whatever its outcome; every error is OpenAI-shaped
JSON, and nothing a client sends can stop the server.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from doctorkit import sampling
from doctorkit.generation import Row, prompt_token_ids
from doctorkit.serve.audit import AuditLog
from doctorkit.serve.batcher import Job, QueueFull
from doctorkit.serve.schema import ApiError, ChatRequest, parse_request

FINISH = {"stop": "stop", "cancelled": "stop", "length": "length", "time": "length"}  # ours -> OpenAI's


@dataclass
class Limits:
    max_request_bytes: int = 64_000      # the whole JSON body
    max_prompt_tokens: int = 2048        # system + history + message + knowledge, after the chat template
    max_tokens: int = 1024               # the largest max_tokens a request may ask for
    default_max_tokens: int = sampling.MAX_NEW_TOKENS
    api_keys: list[str] = field(default_factory=list)   # empty: no key needed (loopback only, see cli)


def create_app(served: dict, batchers: dict, limits: Limits, audit: AuditLog, grounders: dict) -> FastAPI:
    """served: name -> Served; batchers: id(backend) -> Batcher; grounders: name -> messages -> (messages, hits)."""
    app = FastAPI(title="DoctorKit", docs_url=None, redoc_url=None, openapi_url=None)

    def error_response(err: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):   # unknown routes, wrong methods
        return error_response(ApiError(exc.status_code if exc.status_code in (404, 405) else 400, str(exc.detail)))

    @app.exception_handler(Exception)
    async def any_error(request, exc: Exception):   # a bug of ours: one line, no traceback to the client
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}"))

    def authorize(request: Request) -> str | None:
        if not limits.api_keys:
            return None
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        matched = None
        for key in limits.api_keys:   # compare against every key, in constant time each: no timing hint
            if hmac.compare_digest(token.encode("utf-8"), key.encode("utf-8")):
                matched = key
        if matched is None:
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")
        return matched

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(served), "waiting": sum(len(b.waiting) for b in batchers.values())}

    @app.get("/v1/models")
    async def models(request: Request):
        key, started = None, time.monotonic()
        try:
            key = authorize(request)
        except ApiError as err:
            audit.write(key=key, path="/v1/models", model=None, status=err.status, error=err.message)
            return error_response(err)
        audit.write(key=key, path="/v1/models", model=None, status=200, latency_s=time.monotonic() - started)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "doctorkit"}
                                           for name in served]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        started = time.monotonic()
        record = {"key": None, "path": "/v1/chat/completions", "model": None}
        try:
            record["key"] = authorize(request)
            req = parse_request(await read_body(request, limits.max_request_bytes))
            record["model"] = req.model
            job, messages = make_job(req)
        except ApiError as err:
            audit.write(**record, status=err.status, latency_s=time.monotonic() - started, error=err.message)
            return error_response(err)
        done = lambda status, error=None: audit.write(   # noqa: E731  one audit line per request, at its end
            **record, status=status, prompt_tokens=len(job.row.prompt), completion_tokens=len(job.row.tokens),
            latency_s=time.monotonic() - started, finish_reason=job.row.finish_reason, error=error,
            messages=messages, reply=job.row.text.strip())
        if req.stream:
            return StreamingResponse(stream_events(job, req, done), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            await collect(job, request)
        except ApiError as err:
            done(err.status, err.message)
            return error_response(err)
        if job.row.finish_reason == "cancelled":   # the client hung up; nobody reads this reply
            done(499, "client disconnected")
            return error_response(ApiError(499, "client disconnected"))
        done(200)
        return completion_body(job, req.model)

    def make_job(req: ChatRequest) -> tuple[Job, list[dict]]:
        if req.model not in served:
            raise ApiError(404, f"model '{req.model}' is not served here (GET /v1/models lists them)",
                           param="model", code="model_not_found")
        s = served[req.model]
        asked = req.max_completion_tokens or req.max_tokens or min(limits.default_max_tokens, limits.max_tokens)
        if asked > limits.max_tokens:
            raise ApiError(400, f"max_tokens {asked} is over this server's limit of {limits.max_tokens}",
                           param="max_tokens")
        sent = [{"role": m.role, "content": m.text()} for m in req.messages]   # what the audit log may keep
        messages = [dict(m) for m in sent]
        if s.system_prompt and messages[0]["role"] != "system":   # the prompt the run was trained with
            messages.insert(0, {"role": "system", "content": s.system_prompt})
        if req.knowledge:
            messages, _hits = grounders[req.model](messages)   # the same grounding as training and chat
        try:
            prompt = prompt_token_ids(s.tokenizer, messages)
        except Exception as err:   # a template that refuses this conversation (e.g. roles out of order)
            raise ApiError(400, f"messages: the model's chat template refused them ({str(err).splitlines()[0]})",
                           param="messages") from None
        if len(prompt) > limits.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {len(prompt)} tokens (system, history, knowledge and message); "
                                f"this server takes at most {limits.max_prompt_tokens}", param="messages",
                           code="context_length_exceeded")
        row = Row(prompt, asked, stop=tuple(req.stop or ()), cancel=threading.Event())
        sampling = dict(temperature=req.temperature, top_p=req.top_p, repetition_penalty=req.repetition_penalty)
        job = Job(s, row, sampling, req.seed, asyncio.get_running_loop(), asyncio.Queue())
        try:
            batchers[id(s.backend)].submit(job)
        except QueueFull as err:
            raise ApiError(429, str(err), code="queue_full") from None
        return job, sent

    return app


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(400, f"request body is {declared} bytes; this server takes at most {limit}")
    body = bytearray()
    async for chunk in request.stream():   # chunked uploads are counted as they come
        body += chunk
        if len(body) > limit:
            raise ApiError(400, f"request body is over {limit} bytes")
    return bytes(body)


async def collect(job: Job, request: Request) -> None:
    """Wait for the reply; a client that hangs up cancels its row (the batch goes on without it)."""
    while True:
        try:
            kind, payload = await asyncio.wait_for(job.events.get(), timeout=0.5)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.row.cancel.set()
            continue
        if kind == "done":
            return
        if kind == "error":
            raise ApiError(*payload)


async def stream_events(job: Job, req: ChatRequest, done):
    """Server-sent events as OpenAI sends them: a role chunk, content chunks, a finish chunk, [DONE]."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish=None, usage=None, choices=True) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    status, error = 200, None
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, payload = await job.events.get()
            if kind == "text":
                yield chunk({"content": payload})
            elif kind == "error":
                status, error = payload
                yield f"data: {json.dumps(ApiError(*payload).body(), ensure_ascii=False)}\n\n"
                break
            else:
                yield chunk({}, FINISH.get(job.row.finish_reason, "stop"))
                if req.stream_options and req.stream_options.include_usage:
                    yield chunk({}, usage=usage(job), choices=False)
                break
        yield "data: [DONE]\n\n"
    except BaseException:   # the client went away mid-stream: stop generating its row
        status, error = 499, "client disconnected"
        raise
    finally:
        job.row.cancel.set()
        done(status, error)


def usage(job: Job) -> dict:
    prompt, completion = len(job.row.prompt), len(job.row.tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(job: Job, model: str) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": job.row.text.strip()},
                                         "finish_reason": FINISH.get(job.row.finish_reason, "stop")}],
            "usage": usage(job)}
