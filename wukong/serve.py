"""``wukong serve``: predictions over HTTP, on FastAPI and uvicorn (the ``wukong[serve]`` extra).

- ``GET|HEAD /health`` -> ``{"status": "ok", "modality": ..., "classes": [...]}``
- ``POST /predict?top_k=K``: image models take the raw bytes of one image, or ``multipart/form-data``
  with one or more files; text models take JSON ``{"text": "..."}`` or ``{"texts": [...]}``. The
  answer is the record (or list of records) of ``wukong predict --json``.
- ``/docs`` (OpenAPI page) and ``/openapi.json``.

Every error is JSON ``{"error": "..."}`` with its status: 400 (an input that cannot be used), 401 (no
or wrong bearer token, when the server has one), 408 (a body that stalls), 413 (over the size
limit), 415 (a kind of body this model does not take), 422 (a bad ``top_k``). Requests that arrive
together are predicted together: a micro-batcher gathers them for a few milliseconds into one
forward pass, run on one worker thread (the network already uses every core).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from wukong.errors import WukongError

MAX_BODY = 32 * 1024 * 1024
BODY_TIMEOUT = 30.0  # seconds a client may take to send its body
MAX_BATCH = 64  # inputs gathered into one forward pass at the most
BATCH_WAIT = 0.004  # seconds the first request of a batch waits for others


class MicroBatcher:
    """Gathers the inputs of concurrent requests into one ``predict(inputs, top_k)`` call."""

    def __init__(self, predict: Callable[[list[Any], int], list[dict[str, Any]]]) -> None:
        self.predict = predict
        self.queue: asyncio.Queue[tuple[list[Any], int, asyncio.Future]] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wukong-predict")

    async def submit(self, inputs: list[Any], top_k: int) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, top_k, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + BATCH_WAIT
            while sum(len(item[0]) for item in batch) < MAX_BATCH:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            inputs = [x for item in batch for x in item[0]]
            k = max(item[1] for item in batch)
            try:
                rows = await loop.run_in_executor(self.pool, self.predict, inputs, k)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for item_inputs, top_k, future in batch:
                mine = [_trim(row, top_k) for row in rows[start : start + len(item_inputs)]]
                start += len(item_inputs)
                if not future.done():
                    future.set_result(mine)


def _trim(row: dict[str, Any], top_k: int) -> dict[str, Any]:
    return {**row, "top_k": row["top_k"][:top_k]} if "top_k" in row else row


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(model: Any, *, token: str | None = None) -> FastAPI:
    """The FastAPI application serving ``model`` (run it with uvicorn, or ``serve``)."""
    batcher = MicroBatcher(model.predict_records)
    expected = f"Bearer {token}".encode() if token else None

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.pool.shutdown(wait=False)

    app = FastAPI(
        title=f"Wukong {model.modality} classifier",
        description=f"Classes: {', '.join(model.classes_)}. Errors are JSON {{'error': ...}}.",
        lifespan=lifespan,
    )

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        headers = {"Connection": "close"} if exc.status in (408, 413) else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:  # a bug, not the client's fault: still JSON
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "modality": model.modality, "classes": list(model.classes_)}

    @app.head("/health", include_in_schema=False)  # load balancers probe with HEAD
    async def health_head() -> Response:
        return Response(media_type="application/json")

    @app.post("/predict")
    async def predict(request: Request, top_k: str = "1") -> Any:
        """Image models: the raw bytes of one image, or multipart files. Text models: JSON
        ``{"text": ...}`` or ``{"texts": [...]}``. ``top_k``: how many classes to list."""
        given = (request.headers.get("authorization") or "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            raise Refused(401, "missing or wrong token: send 'Authorization: Bearer <token>'")
        if not top_k.isdigit() or int(top_k) < 1:
            raise Refused(422, f"top_k={top_k!r}: give a whole number >= 1")
        body = await read_body(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        inputs, names, single = await _inputs(model.modality, kind, body, request)
        try:
            rows = await batcher.submit(inputs, int(top_k))
        except WukongError as exc:
            raise Refused(400, str(exc)) from None
        rows = [{**row, "input": name} for row, name in zip(rows, names, strict=True)]
        if single:
            if "error" in rows[0]:
                raise Refused(400, f"the uploaded {model.modality}: {rows[0]['error']}")
            return rows[0]
        if all("error" in row for row in rows):
            raise Refused(400, "; ".join(f"{row['input']}: {row['error']}" for row in rows))
        return rows

    return app


async def read_body(request: Request) -> bytes:
    """The body, up to ``MAX_BODY`` bytes and within ``BODY_TIMEOUT`` seconds. One over the limit is
    read to its end (or for as long) and dropped before it is refused: a server that closed the
    connection on a client still sending would lose the answer with it."""
    declared = request.headers.get("content-length")
    over = declared is not None and declared.isdigit() and int(declared) > MAX_BODY
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size, over
        async for chunk in request.stream():
            size += len(chunk)
            over = over or size > MAX_BODY
            if over:
                chunks.clear()
            else:
                chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), BODY_TIMEOUT)
    except TimeoutError:
        if not over:
            raise Refused(408, f"the body did not arrive within {BODY_TIMEOUT:.0f} s") from None
    if over:
        sent = f"body of {declared} bytes" if declared is not None and declared.isdigit() else "body"
        raise Refused(413, f"{sent}: over the {MAX_BODY}-byte limit")
    if not size:
        raise Refused(400, "empty body: send an image (or JSON for a text model)")
    return b"".join(chunks)


async def _inputs(modality: str, kind: str, body: bytes, request: Request) -> tuple[list[Any], list[str], bool]:
    """(inputs for ``predict_records``, their names, whether one input was sent on its own)."""
    if modality == "image":
        if kind == "multipart/form-data":
            files = await _uploaded_files(body, request)
            return [data for _, data in files], [name for name, _ in files], False
        if kind == "application/json" or kind.startswith("text/"):
            raise Refused(415, "an image model takes image bytes, or multipart/form-data files; not JSON or text")
        return [body], ["upload"], True
    if kind not in ("application/json", ""):
        raise Refused(415, 'a text model takes JSON: {"text": "..."} or {"texts": ["...", ...]}')
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(400, f'send JSON {{"text": ...}}: {exc}') from None
    if not isinstance(payload, dict):
        raise Refused(
            400, f'send a JSON object {{"text": "..."}} or {{"texts": [...]}}, not a {type(payload).__name__}'
        )
    single = "text" in payload and "texts" not in payload
    texts = [payload["text"]] if single else payload.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise Refused(400, 'send JSON {"text": "..."} or {"texts": ["...", ...]} (strings)')
    return texts, [t[:200] for t in texts], single


async def _uploaded_files(body: bytes, request: Request) -> list[tuple[str, bytes]]:
    async def receive() -> dict[str, Any]:  # the body was read (and bounded) already
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form()
    except Exception as exc:  # noqa: BLE001 - starlette's multipart errors have several types
        raise Refused(400, f"unreadable multipart body ({exc})") from None
    files = [(item.filename or key, await item.read()) for key, item in form.multi_items() if hasattr(item, "read")]
    if not files:
        raise Refused(400, "multipart body without files: send each image as a file field")
    return files


def serve(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    token: str | None = None,
    workers: int = 1,
    model_dir: str | None = None,
    engine: str = "auto",
    **settings: Any,
) -> None:
    """Run the server until interrupted. ``workers > 1`` starts that many processes (each loads the
    model from ``model_dir``), behind one port."""
    import uvicorn

    print(f"serving {model.modality} model on http://{host}:{port} (POST /predict, GET /health, /docs)")
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: {host} is reachable from other machines and --token is not set: anyone can predict")
    if workers > 1:
        if model_dir is None:
            raise WukongError("several workers load the model themselves: give the model folder")
        os.environ.update(WUKONG_SERVE_MODEL=str(model_dir), WUKONG_SERVE_ENGINE=engine)
        os.environ["WUKONG_SERVE_SETTINGS"] = json.dumps({k: v for k, v in settings.items() if v is not None})
        if token:
            os.environ["WUKONG_SERVE_TOKEN"] = token
        uvicorn.run("wukong.serve:app_from_environment", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(model, token=token), host=host, port=port, log_level="warning")


def app_from_environment() -> Any:
    """The application of one worker process (``serve(workers > 1)``): the model named in the environment."""
    import wukong

    model = wukong.load(os.environ["WUKONG_SERVE_MODEL"])
    if hasattr(model, "engine"):
        model.engine = os.environ.get("WUKONG_SERVE_ENGINE", "auto")
    model.set_params(**json.loads(os.environ.get("WUKONG_SERVE_SETTINGS") or "{}"))
    return create_app(model, token=os.environ.get("WUKONG_SERVE_TOKEN") or None)


class BackgroundServer:
    """The app served by uvicorn on a thread, on 127.0.0.1 and a free port (``url``), until the
    ``with`` block ends: for tests, benchmarks and notebooks.

    Example:
        >>> with BackgroundServer(create_app(model)) as server:          # doctest: +SKIP
        ...     urllib.request.urlopen(server.url + "/health").read()
    """

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind((host, 0))
        self.url = f"http://{host}:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.02)
        if not self.server.started:
            raise WukongError(f"the server on {self.url} did not start")
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()
