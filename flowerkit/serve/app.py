"""The HTTP API and the page: `create_app(predictor, settings)` is a FastAPI
app, run by uvicorn (`flowerkit serve`).

    GET  /                 the page: drop photos, see their top classes
    POST /v1/predict       images (multipart files, or one image as the body)
    GET  /v1/model         class names, input size, backend or runtime, versions
    GET  /healthz          the process answers
    GET  /readyz           the model is loaded and warmed up
    GET  /docs             the OpenAPI page (/openapi.json its schema)

Every error is a JSON body {"detail": "<one sentence>"}: never a traceback,
and the next request is served normally. Requests never name server files;
bodies are capped at `max_request_bytes` and at `max_images` images; with a
token, every /v1 route needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import importlib.resources
import logging
import time
from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from flowerkit import __version__
from flowerkit.data.decode import ImageProblem, decode_image
from flowerkit.serve.batching import Batcher, Busy, ModelFailed
from flowerkit.report.metrics import top_classes
from flowerkit.serve.predictors import Predictor, recipe_summary

log = logging.getLogger("flowerkit.serve")
STATIC = {  # the page's files, served from the package (nothing from outside)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    # The page may load only its own files; photos are shown from blob: URLs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
RAW_TYPES = ("application/octet-stream",)  # besides image/*
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                },
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_PREDICT_EXAMPLE = [
    {"image": "rose.jpg", "top": [{"class": "roses", "probability": 0.93},
                                  {"class": "tulips", "probability": 0.05}]},
]


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    top_k: int = 3
    tta: str | None = None  # the default for requests: None or "flip"
    token: str | None = None
    max_images: int = 16  # per request
    max_request_bytes: int = 20 * 2**20
    max_queue: int = 512  # images waiting at once; beyond, 503


class ServeError(Exception):
    """An error answered as {"detail": message} with `status`."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class _BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413, checked
    against Content-Length first, then while it streams in (chunked bodies)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"The request is larger than the limit of {self.limit / 2**20:g} MiB."
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _error(413, message)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise ServeError(413, message)
            return event

        await self.app(scope, limited_receive, send)


@dataclasses.dataclass
class ServeState:
    """Everything the routes read, one per app (`app.state.serve`): the
    model, the settings, the batcher, and whether warm-up has finished."""

    predictor: Predictor
    settings: ServeSettings
    batcher: Batcher
    ready: bool = False
    failed: str | None = None  # why warm-up failed

    async def warm_up(self) -> None:
        try:
            started = time.perf_counter()
            await self.batcher.run_in_model_thread(self.predictor.warm_up, self.settings.max_batch)
            self.ready = True
            log.info("ready: the model warmed up in %.1f s", time.perf_counter() - started)
        except Exception as error:
            self.failed = str(error)
            log.exception("warming the model up failed")


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


def create_app(predictor: Predictor, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The FastAPI app serving `predictor`; its lifespan starts the batcher
    and warms the model up in the background (/readyz says when done)."""
    batcher = Batcher(predictor.predict, settings.max_batch, settings.max_wait_ms, settings.max_queue)
    state = ServeState(predictor, settings, batcher)
    app = FastAPI(
        title="flowerkit",
        version=__version__,
        description="Top-k classes of photos from a trained flowerkit model.",
        lifespan=_lifespan,
    )
    app.state.serve = state
    app.add_middleware(_BodyLimit, limit=settings.max_request_bytes)
    _add_error_handlers(app)
    app.include_router(v1)
    app.include_router(health)
    for route, (name, media_type) in STATIC.items():
        _add_static(app, route, name, media_type)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    state: ServeState = app.state.serve
    await state.batcher.start()
    warming = asyncio.create_task(state.warm_up())
    try:
        yield
    finally:
        warming.cancel()
        await state.batcher.stop()


_bearer = HTTPBearer(auto_error=False, description="Only when the server was started with a token.")


def check_token(state: ServeState = Depends(serve_state),
                credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    token = state.settings.token
    if token is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ServeError(401, "This server needs a token: send the header "
                         "'Authorization: Bearer <token>'.", {"WWW-Authenticate": "Bearer"})


v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_token)])
health = APIRouter()


@v1.post("/predict", summary="Top-k classes of one or more images", openapi_extra=_PREDICT_BODY,
         responses={200: {"content": {"application/json": {"example": _PREDICT_EXAMPLE}}}})
async def predict(
    request: Request,
    top_k: int | None = Query(None, ge=1, description="classes per image (default: the server's "
                                                      "--top-k, in GET /v1/model's serving)"),
    tta: Literal["flip", "none"] | None = Query(
        None, description="'flip': average with the mirror image (default: the server's --tta, "
                          "in GET /v1/model's serving)"),
    state: ServeState = Depends(serve_state),
):
    started = time.perf_counter()
    if not state.ready:
        raise ServeError(503, "The model is still warming up; try again in a moment.", {"Retry-After": "1"})
    settings, predictor = state.settings, state.predictor
    uploads = await _read_images(request, settings)
    decoded = await run_in_threadpool(_decode_all, uploads, predictor.image_size)
    decode_ms = (time.perf_counter() - started) * 1000
    flip = (tta or settings.tta or "none") == "flip"
    try:
        probabilities, batch = await state.batcher.predict(decoded, flip)
    except Busy:
        raise ServeError(503, "The server is busy: too many images are waiting; try again shortly.",
                         {"Retry-After": "1"}) from None
    except ModelFailed:
        raise ServeError(500, "The model failed on this request; the error is in the server's log.") from None
    k = top_k or settings.top_k
    results = [{"image": name, "top": top_classes(row, predictor.class_names, k)}
               for (name, _), row in zip(uploads, probabilities)]
    total_ms = (time.perf_counter() - started) * 1000
    timing = (f"decode;dur={decode_ms:.1f}, queue;dur={batch.queue_ms:.1f}, "
              f"model;dur={batch.model_ms:.1f}, total;dur={total_ms:.1f}")
    return JSONResponse(results, headers={"Server-Timing": timing, "X-Batch-Images": str(batch.images)})


@v1.get("/model", summary="What is served")
async def model(state: ServeState = Depends(serve_state)):
    predictor, settings = state.predictor, state.settings
    return {
        "class_names": list(predictor.class_names),
        "image_size": predictor.image_size,
        **predictor.describe(),
        "recipe": recipe_summary(predictor.recipe),
        "serving": {
            "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
            "top_k": settings.top_k, "tta": settings.tta, "max_images": settings.max_images,
            "max_request_bytes": settings.max_request_bytes, "token": settings.token is not None,
        },
    }


@health.get("/healthz", summary="The process answers")
async def healthz():
    return {"status": "ok"}


@health.get("/readyz", summary="The model is loaded and warmed up")
async def readyz(state: ServeState = Depends(serve_state)):
    if state.ready:
        return {"status": "ready", "batches": state.batcher.batches}
    if state.failed:
        return _error(503, f"Warming the model up failed: {state.failed}")
    return _error(503, "The model is warming up.")


def _add_static(app: FastAPI, route: str, name: str, media_type: str) -> None:
    content = importlib.resources.files("flowerkit.serve").joinpath("static", name).read_bytes()

    @app.get(route, include_in_schema=False)
    async def static():
        return Response(content, media_type=media_type, headers=PAGE_HEADERS)


async def _read_images(request: Request, settings: ServeSettings) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of each image in the request."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=settings.max_images, max_fields=settings.max_images)
        except HTTPException as error:  # python-multipart's parse errors, as Starlette raises them
            if "Too many" in str(error.detail):
                raise ServeError(413, f"Too many images: at most {settings.max_images} per request.") from None
            raise ServeError(400, f"Malformed multipart body: {error.detail}".rstrip(".") + ".") from None
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ServeError(400, "No image in the request: send images as multipart files "
                                  "(any field name) or one image as the request body.")
        uploads = [((upload.filename or "image")[:200], await upload.read()) for upload in files]
        await form.close()
        return uploads
    if media.startswith("image/") or media in RAW_TYPES or not media:  # the body is one image
        body = await request.body()
        if not body:
            raise ServeError(400, "Empty request body: send an image, or images as multipart files.")
        return [("image", body)]
    raise ServeError(415, f"Unsupported content type {media!r}: send multipart/form-data, "
                          "or one image with an image/* content type.")


def _decode_all(uploads, image_size: int) -> np.ndarray:
    images = []
    for name, data in uploads:
        try:
            images.append(decode_image(data, image_size))
        except ImageProblem as problem:
            raise ServeError(422, f"Cannot read {name}: {problem}.") from None
        except Exception:  # whatever else Pillow raises on hostile data
            log.exception("decoding %s failed", name)
            raise ServeError(422, f"Cannot read {name}: not an image flowerkit can decode.") from None
    return np.stack(images)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request, error: ServeError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        detail = error.detail if isinstance(error.detail, str) else "Bad request."
        return _error(error.status_code, detail, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return _error(422, f"Invalid {where}: {first.get('msg', 'invalid value')}.")

    @app.exception_handler(Exception)
    async def crashed(request, error: Exception):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return _error(500, "Internal server error; the details are in the server's log.")
