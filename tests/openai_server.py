"""A small OpenAI-compatible HTTP server for tests, on 127.0.0.1.

    with OpenAIStub() as stub:
        client = openai.AsyncOpenAI(api_key="k", base_url=stub.base_url)
        stub.script_faults("embeddings", [{"status": 429, "retry_after": 1}, 500, {"hang": 3}])

Endpoints: POST /v1/embeddings, POST /v1/chat/completions, GET /v1/models.
Embeddings are deterministic: the offline hashing embedding of each input,
projected to `dim` dimensions by a fixed random matrix, so similar texts get
similar vectors. Chat completions answer "REWRITE: " + the last user message.

Like the real API, an embeddings request is refused (400) when it has more than
2,048 inputs, an empty input, or an input of more than 8,191 whitespace-separated
words (every word is at least one token, so this is a lower bound on the real count).

Faults are consumed one per request, before answering normally: an int is a
status code, a dict may hold status, retry_after (seconds, sent as Retry-After),
hang (seconds to wait first; with no status the request is then answered normally),
content, refusal and finish_reason (a chat answer of that content: e.g. a judge's JSON verdict or a refusal),
when (a string: the fault waits for a request whose JSON body contains it; stages that
run side by side send their requests in either order).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from pageperfect.analysis.embeddings import HashingEmbedder
from tests.helpers.http import send_json, serve

MAX_INPUTS = 2048
MAX_WORDS_PER_INPUT = 8191
ENDPOINTS = ("embeddings", "chat/completions", "models")


def _endpoint(path: str) -> str:
    path = path.split("?", 1)[0].strip("/")
    return path[3:] if path.startswith("v1/") else path


class OpenAIStub:
    def __init__(self, dim: int = 64, model: str = "text-embedding-3-small") -> None:
        self.dim = dim
        self.model = model
        self.requests: dict[str, int] = defaultdict(int)  # every request received, faulted ones included
        self.inputs: dict[str, int] = defaultdict(int)  # inputs of successfully answered requests
        self.authorization: list[str] = []
        self.bodies: dict[str, list[dict]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being handled at once
        self._faults: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()
        self._hasher = HashingEmbedder()
        rng = np.random.default_rng(12345)
        self._projection = rng.standard_normal((self._hasher.dim, dim)).astype(np.float32) / np.sqrt(dim)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ control

    def start(self) -> str:
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server, self._thread = serve(Handler, name="openai-stub")
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OpenAIStub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script_faults(self, endpoint: str, faults: list) -> None:
        """Queue faults for the next requests to endpoint ("embeddings", "chat/completions", "models")."""
        endpoint = _endpoint(endpoint)
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._faults[endpoint].extend(faults)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.inputs.clear()
            self.max_in_flight = 0
            self.authorization.clear()
            self.bodies.clear()

    def _next_fault(self, endpoint: str, body: dict | None) -> Any:
        """The first queued fault that applies to this request, taken off the queue."""
        text = json.dumps(body or {})
        with self._lock:
            queue = self._faults[endpoint]
            for index, fault in enumerate(queue):
                if not isinstance(fault, dict) or fault.get("when") is None or fault["when"] in text:
                    del queue[index]
                    return fault
            return None

    def _record(self, endpoint: str, headers: Any, body: dict) -> None:
        with self._lock:
            self.requests[endpoint] += 1
            self.authorization.append(headers.get("Authorization", ""))
            self.bodies[endpoint].append(body)

    # ------------------------------------------------------------------ answers

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._hasher.embed_sync(texts) @ self._projection
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (vectors / norms).astype(np.float32)

    def _embeddings(self, body: dict) -> tuple[int, dict]:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            return 400, _error("input must be a non-empty string or list of strings")
        if len(inputs) > MAX_INPUTS:
            return 400, _error(f"'input' has {len(inputs)} items; at most {MAX_INPUTS} are allowed")
        if any(not t for t in inputs):
            return 400, _error("'input' cannot contain an empty string")
        words = [len(t.split()) for t in inputs]
        if max(words) > MAX_WORDS_PER_INPUT:
            return 400, _error(f"This model's maximum context length is 8192 tokens; an input has {max(words)}")
        vectors = self.embed(inputs)
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if as_base64 else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        with self._lock:
            self.inputs["embeddings"] += len(inputs)
        tokens = sum(max(1, w) for w in words)
        return 200, {
            "object": "list",
            "data": data,
            "model": body.get("model", self.model),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat(self, body: dict, scripted: dict | None = None) -> tuple[int, dict]:
        messages = body.get("messages") or []
        user = [m.get("content", "") for m in messages if m.get("role") == "user"]
        if not user:
            return 400, _error("messages must include a user message")
        prompt = user[-1] if isinstance(user[-1], str) else json.dumps(user[-1])
        scripted = scripted or {}
        content = scripted.get("content", None if "refusal" in scripted else f"REWRITE: {prompt}")
        with self._lock:
            self.inputs["chat/completions"] += 1
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return 200, {
            "id": f"chatcmpl-stub-{self.requests['chat/completions']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": scripted.get("refusal")},
                    "finish_reason": scripted.get("finish_reason", "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len((content or "").split()),
                "total_tokens": prompt_tokens + len((content or "").split()),
            },
        }

    def _models(self) -> tuple[int, dict]:
        names = [self.model, "gpt-4o-mini"]
        return 200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "stub"} for n in names]}


def _error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._handle(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, _error("body is not JSON"))
            return
        self._handle(body)

    def _handle(self, body: dict | None) -> None:
        stub = self.owner
        endpoint = _endpoint(self.path)
        if endpoint not in ENDPOINTS:
            self._send(404, _error(f"no route {self.path}", "not_found"))
            return
        stub._record(endpoint, self.headers, body or {})
        with stub._lock:
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            self._answer(stub, endpoint, body)
        finally:
            with stub._lock:
                stub.in_flight -= 1

    def _answer(self, stub: OpenAIStub, endpoint: str, body: dict | None) -> None:
        fault = stub._next_fault(endpoint, body)
        if fault is not None:
            if isinstance(fault, int):
                fault = {"status": fault}
            if fault.get("hang"):
                time.sleep(float(fault["hang"]))
            if fault.get("status"):
                status = int(fault["status"])
                headers = {}
                if fault.get("retry_after") is not None:
                    headers["Retry-After"] = str(fault["retry_after"])
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                self._send(status, _error(f"scripted fault {status}", kind), headers)
                return
            if endpoint == "chat/completions" and {"content", "refusal"} & fault.keys():
                self._send(*stub._chat(body or {}, scripted=fault))
                return
        if endpoint == "embeddings" and self.command == "POST":
            status, payload = stub._embeddings(body or {})
        elif endpoint == "chat/completions" and self.command == "POST":
            status, payload = stub._chat(body or {})
        elif endpoint == "models" and self.command == "GET":
            status, payload = stub._models()
        else:
            status, payload = 405, _error("method not allowed")
        self._send(status, payload)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        try:
            send_json(self, status, payload, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a scripted hang outlasted its timeout)
