"""`flowerkit serve`: every route through FastAPI's test client, bad input
never taking the server down, batching that changes no prediction, the
token, and an ONNX file served without Keras."""

from __future__ import annotations

import importlib.util
import json
import logging
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'flowerkit[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from flowerkit.serve.app import ServeSettings, create_app  # noqa: E402
from flowerkit.serve.loading import load_predictor  # noqa: E402
from flowerkit.serve.predictors import Predictor  # noqa: E402
from tests.helpers import REPO  # noqa: E402
from tests.serve_fixtures import FLOWER_CLASSES, free_port, photos, save_tiny_run  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return save_tiny_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def predictor(run_folder):
    return load_predictor(run_folder)


@pytest.fixture(scope="module")
def real_photos():
    return photos(2)


def client_for(predictor, **settings) -> TestClient:
    client = TestClient(create_app(predictor, ServeSettings(**settings)), raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready within 60 s"
        time.sleep(0.02)
    return client


@pytest.fixture(scope="module")
def client(predictor):
    client = client_for(predictor, max_batch=8, max_wait_ms=30, max_images=4, max_request_bytes=2**20)
    yield client
    client.__exit__(None, None, None)


def files(paths):
    return [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]


def test_routes_answer_and_describe_the_model(client, run_folder):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    model = client.get("/v1/model").json()
    assert model["class_names"] == list(FLOWER_CLASSES) and model["image_size"] == 32
    assert model["format"] == "keras" and model["backend"] in ("tensorflow", "jax", "torch")
    assert model["recipe"]["name"] == "dense" and model["versions"]["keras"]
    assert model["serving"] == {"max_batch": 8, "max_wait_ms": 30, "top_k": 3, "tta": None, "max_images": 4,
                                "max_request_bytes": 2**20, "token": False}
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200 and "http" not in response.text.replace("/v1/", "")
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/healthz", "/readyz"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert client.get("/etc/passwd").status_code == 404
    assert client.get("/static/../../recipe.json").status_code == 404


def test_predictions_equal_flowerkit_predict_whatever_the_batching(predictor, client, run_folder, real_photos):
    from flowerkit.inference.evaluation import predict

    paths = [str(path) for path in real_photos]
    expected = {tta: predict(run_folder / "model.keras", paths, top_k=5, tta=tta) for tta in (None, "flip")}

    def check(results, tta, chosen):
        reference = [expected[tta][i] for i in chosen]
        assert [r["image"] for r in results] == [real_photos[i].name for i in chosen]
        for got, want in zip(results, reference):
            assert set(got) == {"image", "top"} and [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
            difference = max(abs(a["probability"] - b["probability"]) for a, b in zip(got["top"], want["top"]))
            assert difference <= TOLERANCE

    # Ten concurrent requests of 1-3 photos each, plain and flipped: coalesced.
    requests = [([i % 10, (i + 3) % 10, (i + 7) % 10][: 1 + i % 3], None if i % 2 else "flip") for i in range(10)]

    def send(request, client=client):
        chosen, tta = request
        query = f"?top_k=5&tta={tta or 'none'}"
        response = client.post("/v1/predict" + query, files=files([real_photos[i] for i in chosen]))
        assert response.status_code == 200, response.text
        check(response.json(), tta, chosen)
        return int(response.headers["x-batch-images"])

    with ThreadPoolExecutor(10) as pool:
        batch_sizes = list(pool.map(send, requests))
    assert max(batch_sizes) > 3  # requests shared a batch
    unbatched = client_for(predictor, max_batch=1, max_wait_ms=0)
    try:
        assert {send(request, unbatched) for request in requests[:3]} == {1}
    finally:
        unbatched.__exit__(None, None, None)
    # One image as the raw body; the server's own --tta default.
    response = client.post("/v1/predict?top_k=5", content=real_photos[4].read_bytes(),
                           headers={"content-type": "image/jpeg"})
    assert response.json()[0]["image"] == "image"
    check([{**response.json()[0], "image": real_photos[4].name}], None, [4])
    assert "model;dur=" in response.headers["server-timing"]


def _png_header(width, height) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bad_requests(photo: bytes):
    """(what, request kwargs, status, start of the message) for each bad input."""
    jpeg = {"content-type": "image/jpeg"}
    return [
        ("empty body", dict(content=b"", headers=jpeg), 400, "Empty request body"),
        ("not an image", dict(content=b"hello, world", headers=jpeg), 422, "Cannot read image: not an image"),
        ("truncated JPEG", dict(content=photo[: len(photo) // 3], headers=jpeg), 422,
         "Cannot read image: truncated or corrupt"),
        ("decompression bomb (40000 x 40000 PNG)", dict(content=_png_header(40000, 40000),
                                                       headers={"content-type": "image/png"}), 422,
         "Cannot read image: image too large to decode safely"),
        ("upload over the size limit (1 MiB)", dict(content=b"\xff" * (2**20 + 1), headers=jpeg), 413,
         "The request is larger than the limit of 1 MiB"),
        ("chunked upload over the size limit (no Content-Length)",
         dict(content=iter([b"\xff" * 2**19] * 3), headers=jpeg), 413, "The request is larger than the limit"),
        ("5 files, limit 4", dict(files=[("files", (f"{i}.jpg", photo, "image/jpeg")) for i in range(5)]), 413,
         "Too many images: at most 4 per request"),
        ("wrong content type (application/json)", dict(json={"image": "/etc/passwd"}), 415,
         "Unsupported content type 'application/json'"),
        ("malformed multipart (no boundary)", dict(content=b"--x\r\n", headers={"content-type": "multipart/form-data"}),
         400, "Malformed multipart body"),
        ("multipart without a file", dict(files={"note": (None, "hi")}), 400, "No image in the request"),
        ("one bad file among good ones", dict(files=[("files", ("ok.jpg", photo, "image/jpeg")),
                                                     ("files", ("bad.jpg", b"GIF89a", "image/gif"))]), 422,
         "Cannot read bad.jpg"),
        ("top_k=0", dict(content=photo, headers=jpeg, params={"top_k": 0}), 422, "Invalid top_k"),
        ("tta=rotate", dict(content=photo, headers=jpeg, params={"tta": "rotate"}), 422, "Invalid tta"),
    ]


def test_bad_input_is_one_sentence_and_the_next_request_is_served(client, real_photos):
    photo = real_photos[0].read_bytes()
    table = []
    for what, request, status, message in bad_requests(photo):
        response = client.post("/v1/predict", **request)
        body = response.json()
        assert (response.status_code, set(body)) == (status, {"detail"}), (what, body)
        assert body["detail"].startswith(message) and "Traceback" not in body["detail"], (what, body)
        assert "\n" not in body["detail"] and body["detail"].endswith("."), body
        table.append(f"| {what} | {status} | {body['detail']} |")
        assert client.post("/v1/predict", content=photo, headers={"content-type": "image/jpeg"}).status_code == 200
    print("\n".join(["| input | status | message |", "|---|---|---|", *table]))


class _Fake(Predictor):
    """No Keras: fixed probabilities, a delay, or a crash on demand."""

    class_names, image_size, kind = ("a", "b"), 8, "fake"

    def __init__(self, delay=0.0, crash=False):
        self.delay, self.crash, self.path = delay, crash, REPO

    def warm_up(self, max_batch):
        pass

    def predict(self, images):
        time.sleep(self.delay)
        if self.crash:
            raise RuntimeError("secret internals /opt/model")
        return np.tile([[0.25, 0.75]], (len(images), 1)).astype(np.float32)

    def describe(self):
        return {"format": "fake"}


def _tiny_png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_model_crash_is_a_500_without_internals_and_logged(caplog):
    client = client_for(_Fake(crash=True))
    try:
        with caplog.at_level(logging.ERROR, logger="flowerkit.serve"):
            response = client.post("/v1/predict", content=_tiny_png(), headers={"content-type": "image/png"})
        assert response.status_code == 500
        assert response.json() == {"detail": "The model failed on this request; the error is in the server's log."}
        assert "secret internals" in caplog.text and "Traceback" in caplog.text
        assert client.get("/healthz").status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_the_server_answers_while_a_batch_runs():
    client = client_for(_Fake(delay=1.0), max_wait_ms=0)
    try:
        slow = threading.Thread(target=client.post, args=("/v1/predict",),
                                kwargs=dict(content=_tiny_png(), headers={"content-type": "image/png"}))
        slow.start()
        time.sleep(0.2)  # the batch is running in the model thread
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
        assert time.perf_counter() - started < 0.5
        assert slow.is_alive()
        slow.join()
    finally:
        client.__exit__(None, None, None)


def test_a_full_queue_is_a_503_and_the_queued_requests_are_served():
    """max_queue images at most wait for the model; beyond, 503 with Retry-After."""
    client = client_for(_Fake(delay=1.0), max_batch=1, max_wait_ms=0, max_queue=1)
    png = dict(content=_tiny_png(), headers={"content-type": "image/png"})
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(client.post, "/v1/predict", **png)
            time.sleep(0.3)  # its batch runs in the model thread; the queue is empty again
            queued = pool.submit(client.post, "/v1/predict", **png)
            time.sleep(0.3)  # one image waits: the queue is full
            refused = client.post("/v1/predict", **png)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json() == {
                "detail": "The server is busy: too many images are waiting; try again shortly."}
            assert running.result().status_code == queued.result().status_code == 200
        assert queued.result().json()[0]["top"][0] == {"class": "b", "probability": 0.75}
        assert client.post("/v1/predict", **png).status_code == 200  # room again
    finally:
        client.__exit__(None, None, None)


def test_the_token_guards_every_v1_route_only():
    client = client_for(_Fake(), token="s3cret")
    try:
        png = dict(content=_tiny_png(), headers={"content-type": "image/png"})
        for method, path, kwargs in (("get", "/v1/model", {}), ("post", "/v1/predict", png)):
            response = getattr(client, method)(path, **kwargs)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"].startswith("This server needs a token")
            wrong = {**kwargs, "headers": {**kwargs.get("headers", {}), "Authorization": "Bearer guess"}}
            assert getattr(client, method)(path, **wrong).status_code == 401
            right = {**kwargs, "headers": {**kwargs.get("headers", {}), "Authorization": "Bearer s3cret"}}
            assert getattr(client, method)(path, **right).status_code == 200
        assert client.get("/healthz").status_code == client.get("/").status_code == 200
        assert client.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).json()["serving"]["token"]
    finally:
        client.__exit__(None, None, None)


# A server process that cannot import Keras or a backend (as where none is
# installed): it serves the ONNX file, answers one photo, then stops itself.
_KERAS_FREE_SERVER = """
import json, os, signal, sys, threading, urllib.request
BLOCKED = ("keras", "tensorflow", "jax", "jaxlib", "torch")
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here", name=name)
sys.meta_path.insert(0, Blocker())
model, port, photo, out = sys.argv[1:]
def client():
    import time
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(url + "/readyz").status == 200:
                break
        except OSError:
            time.sleep(0.1)
    request = urllib.request.Request(url + "/v1/predict?top_k=5", data=open(photo, "rb").read(),
                                     headers={"Content-Type": "image/jpeg"})
    result = json.load(urllib.request.urlopen(request))
    described = json.load(urllib.request.urlopen(url + "/v1/model"))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    json.dump({"result": result, "model": described, "loaded": loaded}, open(out, "w"))
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=client, daemon=True).start()
from flowerkit.cli import main
sys.exit(main(["serve", model, "--port", port]))
"""


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_an_onnx_file_is_served_without_keras(run_folder, real_photos, tmp_path):
    from flowerkit.exporting import export, load_exported
    from flowerkit.data.decode import decode_image

    exported = export(run_folder / "model.keras", "onnx", output=tmp_path / "flowers.onnx")
    out = tmp_path / "out.json"
    process = subprocess.run(
        [sys.executable, "-c", _KERAS_FREE_SERVER, str(exported.path), str(free_port()),
         str(real_photos[2]), str(out)], capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    served = json.loads(out.read_text())
    assert served["loaded"] == []
    assert served["model"]["format"] == "onnx" and served["model"]["runtime"].startswith("onnxruntime")
    assert served["model"]["class_names"] == list(FLOWER_CLASSES) and "backend" not in served["model"]
    expected = load_exported(exported.path)(decode_image(str(real_photos[2]), 32)[None])[0]
    top = served["result"][0]["top"]
    assert [t["class"] for t in top] == [FLOWER_CLASSES[i] for i in np.argsort(expected)[::-1]]
    assert max(abs(t["probability"] - expected[FLOWER_CLASSES.index(t["class"])]) for t in top) <= TOLERANCE


@pytest.mark.backend_independent  # refused before Keras is imported
def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    for argv, message in (
        ([str(tmp_path / "missing.keras")], "Model not found"),
        ([str(tmp_path)], "No model.keras in the run folder"),
        ([str(tmp_path / "model.onnx")], "No labels.txt beside"),
    ):
        process = subprocess.run([sys.executable, "-m", "flowerkit", "serve", *argv],
                                 capture_output=True, text=True, timeout=60, cwd=REPO)
        assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
        assert process.stderr.startswith("flowerkit serve: error: " + message), process.stderr
