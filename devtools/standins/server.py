"""Running a fake vendor (an ASGI app) on 127.0.0.1, and the recording/scripting every fake shares.

The tests script fakes in-process; ``make run`` serves some as stand-ins, with ``log`` set so
each request is one line in the stand-in's log."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response


@dataclass
class Recorded:
    """One request a fake received."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class _Scripted:
    response: Response
    method: str | None
    path: str | None
    times: int


class _ScriptedAnswer(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class FakeVendor:
    """Base of every fake: ``app`` records each request into ``requests``; ``fail_next`` scripts errors."""

    url = ""  # the base URL once served
    # When set, every request is logged as one line (method, path, body); headers are not (auth).
    log: logging.Logger | None = None

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripted: list[_Scripted] = []
        self._lock = threading.Lock()
        self.app = FastAPI(dependencies=[Depends(self._record)])
        self.app.add_exception_handler(_ScriptedAnswer, self._answer)  # type: ignore[arg-type]
        self.add_routes(self.app)

    def add_routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget requests, scripts and state (called between tests)."""
        with self._lock:
            self.requests.clear()
            self._scripted.clear()

    def fail_next(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex) with this."""
        response = JSONResponse(body if body is not None else {}, status_code=status, headers=headers)
        self._scripted.append(_Scripted(response, method, path, times))

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """Recorded requests, filtered by method and by ``path`` regex (searched)."""
        return [
            r
            for r in list(self.requests)
            if (method is None or r.method == method) and (path is None or re.search(path, r.path))
        ]

    async def _record(self, request: Request) -> None:
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            raw_path=request.scope.get("raw_path", b"").decode(),
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        if "json" in content_type and body:
            recorded.json = await request.json()
        elif "x-www-form-urlencoded" in content_type:
            recorded.form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if self.log is not None:
            self.log.info("%s %s %s", recorded.method, recorded.path, _brief(recorded))
        with self._lock:
            self.requests.append(recorded)
            for scripted in self._scripted:
                if (scripted.method in (None, request.method)) and (
                    scripted.path is None or re.search(scripted.path, request.url.path)
                ):
                    scripted.times -= 1
                    if scripted.times <= 0:
                        self._scripted.remove(scripted)
                    raise _ScriptedAnswer(scripted.response)

    @staticmethod
    async def _answer(request: Request, exc: _ScriptedAnswer) -> Response:
        return exc.response


def _brief(recorded: Recorded) -> str:
    """A request's body as one line of JSON."""
    if recorded.json is not None:
        return json.dumps(recorded.json, separators=(",", ":"))
    if recorded.form:
        return json.dumps(recorded.form, separators=(",", ":"))
    return recorded.body.decode(errors="replace")


def standin_logger(name: str) -> logging.Logger:
    """The logger of a stand-in served as its own process (uvicorn configures only its own)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger(f"gantry.standin.{name}")


@contextmanager
def serve(app: Any, *, lifespan: Literal["auto", "on", "off"] = "off") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and an ephemeral port in a background thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
