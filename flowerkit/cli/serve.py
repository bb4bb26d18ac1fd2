"""`flowerkit serve MODEL`: the HTTP API (/v1/predict, /v1/model, /healthz,
/readyz, OpenAPI at /docs) and a page at / to try the model in a browser.

MODEL is a run folder, a `model.keras` (on the current Keras backend), or an
exported `.onnx` / `.tflite` file beside its `labels.txt` (then neither
Keras nor a backend is imported)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from flowerkit.cli.common import add_engine_argument, positive_int, say_engine, start_backend
from flowerkit.errors import FlowerkitError
from flowerkit.serve.loading import load_predictor, resolve_model

TOKEN_VARIABLE = "FLOWERKIT_SERVE_TOKEN"


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be 0-10000 ms, got {text}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a run folder, model.keras, or an exported .onnx / .tflite "
                                      "file beside its labels.txt")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=port, default=8000, help="(default: 8000)")
    parser.add_argument("--max-batch", type=positive_int, default=32,
                        help="most images in one model batch (default: 32; 1: no batching)")
    parser.add_argument("--max-wait-ms", type=milliseconds, default=5.0,
                        help="how long a batch waits for more requests (default: 5)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="(default: 3)")
    parser.add_argument("--tta", choices=("flip",), default=None,
                        help="test-time augmentation for every request: average with the mirror image")
    parser.add_argument("--max-images", type=positive_int, default=16,
                        help="most images in one request (default: 16)")
    parser.add_argument("--max-request-mb", type=positive_int, default=20,
                        help="largest request body in MiB (default: 20)")
    parser.add_argument("--token", default=None,
                        help=f"require 'Authorization: Bearer TOKEN' on /v1 (default: ${TOKEN_VARIABLE})")
    add_engine_argument(parser)


def run(args) -> int:
    # fastapi and uvicorn are the optional `serve` extra: imported here, after
    # the arguments are checked, so that `flowerkit --help` needs neither.
    try:
        import uvicorn

        from flowerkit.serve.app import ServeSettings, create_app
    except ImportError as error:
        raise FlowerkitError(f"flowerkit serve needs {error.name}: pip install 'flowerkit[serve]'.") from None
    _, kind = resolve_model(args.model)
    if kind == "keras":
        start_backend(args.model)
    predictor = load_predictor(args.model, engine=args.engine)
    say_engine(predictor.describe()["engine"])
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE) or None
    settings = ServeSettings(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, top_k=args.top_k, tta=args.tta,
        token=token, max_images=args.max_images, max_request_bytes=args.max_request_mb * 2**20,
    )
    if token is None and not _is_loopback(args.host):
        print(f"flowerkit serve: warning: listening on {args.host} without a token: anyone who can "
              f"reach this port can use the model (set --token or ${TOKEN_VARIABLE}).", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"flowerkit serve: {predictor.path} ({kind}, {len(predictor.class_names)} classes) on "
          f"http://{shown}:{args.port}/ (API docs: /docs); warming the model up", file=sys.stderr, flush=True)
    _log_to_stderr()
    uvicorn.run(create_app(predictor, settings), host=args.host, port=args.port, log_level="info")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _log_to_stderr() -> None:
    """The app's own lines (ready, and how long warm-up took) beside uvicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("flowerkit serve: %(message)s"))
    log = logging.getLogger("flowerkit.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
