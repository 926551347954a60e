"""The web app of `rear serve`: a Starlette app, one hand-written page, server-sent events.

Why Starlette and not Gradio: docs/design.md, "The sampling page".

Routes: GET /  the page;  GET /api/info  classes, defaults, bounds;  POST /api/generate  start a
generation (400 with a message on bad input, 429 while another runs);  GET /api/jobs/ID/events  the
job's events as server-sent events;  GET /api/jobs/ID/grid.png  the finished grid.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rear.serve.page import PAGE
from rear.serve.studio import Busy, Job, Studio

POLL_SECONDS = 0.05  # how often an event stream looks for the worker's new events
MAX_BODY = 64 * 1024  # bytes of a generate request (a few hundred class names fit)


def build_app(studio: Studio) -> Starlette:
    """The ASGI app serving `studio`."""

    def job_of(request: Request) -> Job | None:
        return studio.jobs.get(request.path_params["job"])

    def missing(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"no job {request.path_params['job']} (finished grids are kept "
                             f"for the last {studio.config.kept_jobs} generations)"}, status_code=404)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(studio.info())

    async def start(request: Request) -> JSONResponse:
        raw = b""
        async for chunk in request.stream():  # read no more than MAX_BODY, whatever the client sends
            raw += chunk
            if len(raw) > MAX_BODY:
                return JSONResponse({"error": f"the request body is larger than {MAX_BODY:,} bytes"}, status_code=413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep to parse
            return JSONResponse({"error": "the request body must be a JSON object (UTF-8)"}, status_code=400)
        try:
            job = studio.submit(body)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        except Busy as error:
            return JSONResponse({"error": str(error)}, status_code=429)
        return JSONResponse(job.reply())

    async def events(request: Request) -> Response:
        job = job_of(request)
        if job is None:
            return missing(request)

        async def stream() -> AsyncIterator[str]:
            sent = 0
            while True:
                finished = job.finished  # read before the events: the last event is in by then
                while sent < len(job.events):
                    yield f"data: {json.dumps(job.events[sent])}\n\n"
                    sent += 1
                if finished:
                    return
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def grid(request: Request) -> Response:
        job = job_of(request)
        if job is None:
            return missing(request)
        if job.png is None:
            return JSONResponse({"error": "this generation has not finished (or failed)"}, status_code=409)
        return Response(job.png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="{job.filename}"'})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        studio.close()  # shutting down: the generation in flight ends at its next token

    return Starlette(lifespan=lifespan, routes=[
        Route("/", page),
        Route("/api/info", info),
        Route("/api/generate", start, methods=["POST"]),
        Route("/api/jobs/{job}/events", events),
        Route("/api/jobs/{job}/grid.png", grid),
    ])


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve `studio` until Ctrl-C, which cancels the generation in flight and closes open streams within
    a second or two."""
    import uvicorn

    print(f"rear serve: {len(studio.class_names)} classes; sampling defaults {studio.settings()}", flush=True)
    print(f"rear serve: http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    uvicorn.run(build_app(studio), host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)
