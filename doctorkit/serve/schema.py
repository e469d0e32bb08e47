"""The request body of POST /v1/chat/completions (the OpenAI fields we honour) and OpenAI-shaped errors."""
from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from doctorkit import sampling


class ApiError(Exception):
    """An error the client gets as OpenAI-shaped JSON: {"error": {"message", "type", "param", "code"}}."""
    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict] | None = None

    @field_validator("role")
    @classmethod
    def known_role(cls, role: str) -> str:
        if role not in ("system", "user", "assistant", "developer"):
            raise ValueError(f"unsupported role '{role}' (system, user, assistant)")
        return "system" if role == "developer" else role

    def text(self) -> str:
        """Plain text; the content-parts form keeps its text parts (this server takes no images)."""
        if isinstance(self.content, list):
            if any(part.get("type") != "text" for part in self.content):
                raise ApiError(400, "only text content parts are supported", "messages")
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")   # unknown OpenAI fields (user, logprobs=false, ...) are ignored
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(sampling.TEMPERATURE, ge=0.0, le=2.0)
    top_p: float = Field(sampling.TOP_P, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    # DoctorKit extensions (openai client: extra_body={...})
    knowledge: bool = True                       # false: answer without the knowledge base
    repetition_penalty: float = Field(sampling.REPETITION_PENALTY, ge=1.0, le=2.0)

    @field_validator("stop")
    @classmethod
    def at_most_four(cls, stop):
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: at most 4 non-empty strings")
        return stops


def parse_request(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None
