"""The FastAPI app: the routes, and one error boundary that turns every error into a JSON answer naming the field and
the fix (OpenAI's error shape under `/v1`), so a bad request never takes the server down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from memory import ApiKeys, RunRecords
from schemas import VitronError, VitronSettings

from ..api import VitronAgent
from ..mcp_server import HttpMount
from . import artifacts, catalog, openai_compat, page, threads
from .context import ServerContext, Signer, Unauthorized
from .runs import RunConflict, RunFailed, RunManager

log = logging.getLogger("vitron.server")

_NOT_FOUND = {"SessionNotFound", "StepNotFound", "AliasNotFound", "ArtifactNotFound"}
_UNAVAILABLE = {"BackendUnavailable", "DatabaseUnavailable", "StoreUnwritable", "ArtifactDamaged"}


def kind_of(exc: VitronError) -> str:
    return exc.kind if isinstance(exc, RunFailed) else type(exc).__name__


def status_of(exc: VitronError) -> int:
    name = kind_of(exc)
    if isinstance(exc, artifacts.TooLarge) or name == "TooLarge":
        return 413
    if isinstance(exc, RunConflict) or name in ("RunConflict", "SessionBusy"):
        return 409
    if name == "InternalError":
        return 500
    return 404 if name in _NOT_FOUND else 503 if name in _UNAVAILABLE else 400


def error_body(request: Request, status: int, error: dict[str, Any]) -> dict[str, Any]:
    """Our shape, `{"error": {type, field, problem, fix, message}}`, or OpenAI's under `/v1`."""
    message = error.get("message") or error["problem"]
    if request.url.path.startswith("/v1"):
        kind = {401: "authentication_error", 404: "not_found_error", 409: "conflict_error",
                413: "invalid_request_error", 503: "api_error"}.get(status, "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": error.get("field"), "code": error.get("type")}}
    return {"error": {**error, "message": message}}


def error_response(request: Request, exc: VitronError) -> JSONResponse:
    status = status_of(exc)
    body = {"type": kind_of(exc), "field": exc.field, "problem": exc.problem, "fix": exc.fix,
            "message": exc.message}
    return JSONResponse(error_body(request, status, body), status_code=status)


def create_app(settings: VitronSettings | None = None, *, agent: VitronAgent | None = None,
               public_url: str | None = None) -> FastAPI:
    """The server for these settings (its agent made on start, closed on stop; or `agent`, left open)."""
    settings = settings or VitronSettings()

    # The MCP server (`vitron mcp`'s, over streamable HTTP) under /mcp, behind the same keys; a body may hold an upload
    # in base64, as a JSON route's may.
    mcp = HttpMount(lambda: app.state.context, max_body_bytes=settings.max_upload_bytes * 4 // 3 + 2**20)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = agent is None
        served = agent or VitronAgent.from_settings(settings)
        records = RunRecords(served.memory.db)
        ctx = ServerContext(served, settings, records, ApiKeys(served.memory.db), Signer.from_settings(settings),
                            public_url=public_url)
        ctx.manager = RunManager(served, records, lambda ref, base: ctx.describe(ref, base))
        app.state.context = ctx
        try:
            async with mcp.running():  # the MCP sessions end before the agent they call
                yield
        finally:
            ctx.manager.close()
            ctx.close()
            if own:
                served.close()

    app = FastAPI(title="vitron-agent", version="1", lifespan=lifespan,
                  description="Threads and runs of the vision agent, its tools and workflows, artifacts by signed "
                              "URL, and an OpenAI-compatible chat endpoint.")

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes * 4 // 3 + 2**20)

    @app.exception_handler(VitronError)
    async def our_error(request: Request, exc: VitronError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        body = {"type": "Unauthorized", "field": "Authorization", "problem": str(exc),
                "fix": "send a key from `vitron keys create`"}
        return JSONResponse(error_body(request, 401, body), status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
        body = {"type": "InvalidInput", "field": field, "problem": str(err["msg"]).removeprefix("Value error, "),
                "fix": "see the request's schema at /docs"}
        return JSONResponse(error_body(request, 422, body), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"type": "HTTPError", "field": None, "problem": str(exc.detail), "fix": "see /docs"}
        return JSONResponse(error_body(request, exc.status_code, body), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def fault(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        body = {"type": "InternalError", "field": None, "problem": "the server failed to answer this request",
                "fix": "this is a fault of the server; its log has the details"}
        return JSONResponse(error_body(request, 500, body), status_code=500)

    health = APIRouter()

    @health.get("/healthz")
    def healthz() -> dict[str, bool]:
        """The process answers."""
        return {"ok": True}

    @health.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """The parts it needs answer: the database, the artifact store, the broker when one is configured."""
        ctx: ServerContext = request.app.state.context
        checks: dict[str, str] = {}
        checks["database"] = _check("database", lambda: ctx.agent.memory.db.read(
            lambda c: c.exec_driver_sql("SELECT 1")))
        checks["store"] = _check("store", lambda: ctx.store.root.is_dir() or ctx.store.root.mkdir(parents=True))
        if settings.broker_url:
            checks["broker"] = _check("broker", lambda: _ping_broker(settings.broker_url))
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    app.include_router(health)
    app.include_router(threads.router)
    app.include_router(artifacts.router)
    app.include_router(catalog.router)
    app.include_router(openai_compat.router)
    app.router.routes.append(Route("/mcp", endpoint=mcp))  # an ASGI endpoint: the MCP transport answers itself
    page.mount(app)
    return app


class BodyLimit:
    """Refuses a request body over `limit` bytes, by its Content-Length or as it streams in, so no route reads an
    unbounded body (an upload carries its own, tighter limit; a JSON body may hold an image in base64)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            error = artifacts.too_large(f"a request body of {int(declared)} bytes", self.limit, field="body")
            return await error_response(Request(scope), error)(scope, receive, send)
        seen = 0

        async def bounded() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise artifacts.too_large("a request body", self.limit, field="body")
            return message

        await self.app(scope, bounded, send)


def _check(part: str, probe: Any) -> str:
    """"ok", or "unavailable" (the reason goes to the log, not to whoever asked: it can name hosts and paths)."""
    try:
        probe()
    except Exception:
        log.warning("readiness: the %s does not answer", part, exc_info=True)
        return "unavailable"
    return "ok"


def _ping_broker(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)

