"""The HTTP server, run for real by uvicorn on 127.0.0.1: every kind of body, every error as JSON with
its status, and concurrent clients (a short version of benchmarks/serve.py)."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wukong import ImageClassifier, TextClassifier
from wukong.serve import BackgroundServer, create_app

from .conftest import CAT_DOG, FAST_BACKBONE

PHOTOS = sorted((CAT_DOG / "test").glob("*/*.jpg"))


def post(url: str, body: bytes, content_type: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def image_model() -> ImageClassifier:
    return ImageClassifier(FAST_BACKBONE, strategy="features", tap="final", progress=False).fit(CAT_DOG / "train")


def test_several_files_in_one_multipart_request_are_each_predicted(image_model: ImageClassifier) -> None:
    chosen = PHOTOS[:3]
    body, kind = multipart([(p.name, p.read_bytes()) for p in chosen] + [("broken.jpg", b"\xff\xd8 not a jpeg")])
    with BackgroundServer(create_app(image_model)) as server:
        status, rows = post(f"{server.url}/predict?top_k=2", body, kind)
        assert status == 200 and [r["input"] for r in rows] == [p.name for p in chosen] + ["broken.jpg"]
        assert [r["label"] for r in rows[:3]] == image_model.predict(chosen)
        assert all(len(r["top_k"]) == 2 for r in rows[:3]) and "not a readable image" in rows[3]["error"]
        status, answer = post(f"{server.url}/predict", b'{"text": "a cat"}', "application/json")
        assert status == 415 and "image bytes" in answer["error"]
        status, answer = post(f"{server.url}/predict", *multipart([]))
        assert status == 400 and "error" in answer
        assert json.loads(urllib.request.urlopen(f"{server.url}/openapi.json", timeout=30).read())["paths"]


def test_a_text_model_answers_json_and_refuses_other_bodies() -> None:
    texts = ["refund please", "give my money back", "card not here yet", "where is my card"] * 3
    labels = ["refund", "refund", "card", "card"] * 3
    model = TextClassifier(strategy="features", progress=False).fit(texts, labels)
    with BackgroundServer(create_app(model)) as server:
        status, row = post(f"{server.url}/predict", b'{"text": "my card has not arrived"}', "application/json")
        assert status == 200 and row["label"] == "card" and row["input"] == "my card has not arrived"
        status, rows = post(
            f"{server.url}/predict?top_k=2", b'{"texts": ["refund it", "lost card"]}', "application/json"
        )
        assert status == 200 and [r["label"] for r in rows] == model.predict(["refund it", "lost card"])
        for body, kind, expected in [
            (b'["not", "an object"]', "application/json", 400),
            (b"{broken json", "application/json", 400),
            (b'{"texts": [1, 2]}', "application/json", 400),
            (b"plain words", "text/plain", 415),
        ]:
            status, answer = post(f"{server.url}/predict", body, kind)
            assert status == expected and isinstance(answer["error"], str), (body, status, answer)


def test_concurrent_clients_get_right_answers_and_no_server_error(image_model: ImageClassifier) -> None:
    """8 threads, 80 requests, a fifth of them malformed: every good one answered as ``predict`` does."""
    expected = dict(zip(PHOTOS, image_model.predict(PHOTOS), strict=True))
    rng = random.Random(0)
    jobs = [(rng.choice(PHOTOS), rng.random() < 0.2) for _ in range(80)]
    with BackgroundServer(create_app(image_model)) as server:

        def send(job: tuple[Path, bool]) -> tuple[int, object, Path, bool]:
            photo, malformed = job
            body = photo.read_bytes()[: 200 if malformed else None]  # a truncated JPEG
            return (*post(f"{server.url}/predict", body), photo, malformed)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, jobs))
    assert all(status < 500 for status, *_ in results)
    for status, answer, photo, malformed in results:
        if malformed:
            assert status == 400 and "image" in answer["error"]
        else:
            assert status == 200 and answer["label"] == expected[photo]
