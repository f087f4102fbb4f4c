"""The FastAPI application of ``wukong ui``: the page (``static/``) and the JSON API it calls.

Every ``/api`` answer is JSON; an error is ``{"error": "one line"}`` with its status, shown in the
page as it is. Uploads are the raw bytes of one file per request (``PUT /api/projects/P/upload?
filename=F&cls=C``), streamed into the project under a size limit, then checked: nothing reaches a class
folder unchecked, and nothing is written outside the work dir.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from wukong.errors import WukongError
from wukong.serve import Refused, read_body
from wukong.ui.jobs import Jobs
from wukong.ui.projects import MAX_FILE_BYTES, MAX_ZIP_BYTES, Project, Workdir

STATIC = Path(__file__).parent / "static"
TOP_K = 3


def create_ui_app(workdir: str | Path, *, token: str | None = None) -> FastAPI:
    """The page and its API over the projects in ``workdir``.

    Example:
        >>> from wukong.serve import BackgroundServer
        >>> with BackgroundServer(create_ui_app("runs/ui")) as server:   # doctest: +SKIP
        ...     print(server.url)                                         # open it in a browser
    """
    work = Workdir(Path(workdir))
    jobs = Jobs()
    models: dict[str, tuple[int, Any]] = {}  # project -> (config.json's mtime, loaded model)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        jobs.resume_lost(work.projects())
        yield

    async def check_token(request: Request) -> None:
        """Every ``/api`` request carries the token (a header, or ``?token=`` for links and frames)."""
        if token and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            given = given or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Refused(401, "missing or wrong token: open the page with ?token=...")

    app = FastAPI(title="Wukong", lifespan=lifespan, docs_url=None, redoc_url=None, dependencies=[Depends(check_token)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(WukongError)
    async def user_error(_: Request, exc: WukongError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:  # a bug, not the user's doing: still one line
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/projects")
    async def projects() -> list[dict[str, Any]]:
        return [{"name": p.name, "modality": p.modality, "trained": _trained(p)} for p in work.projects()]

    @app.post("/api/projects")
    async def create(request: Request) -> dict[str, Any]:
        body = await _json(request)
        project = work.create(str(body.get("name", "")), str(body.get("modality", "")))
        return describe(project)

    @app.get("/api/projects/{name}")
    async def show(name: str) -> dict[str, Any]:
        return describe(work.get(name))

    @app.post("/api/projects/{name}/classes")
    async def add_class(name: str, request: Request) -> dict[str, Any]:
        project = work.get(name)
        project.add_class(str((await _json(request)).get("name", "")))
        return describe(project)

    @app.delete("/api/projects/{name}/classes/{cls}")
    async def remove_class(name: str, cls: str) -> dict[str, Any]:
        project = work.get(name)
        project.remove_class(cls)
        return describe(project)

    @app.put("/api/projects/{name}/upload")
    async def upload(name: str, request: Request, filename: str, cls: str = "") -> dict[str, Any]:
        project = work.get(name)
        if project.modality != "image":
            raise WukongError(f"{project.name} is a text project: paste lines, or import a table from disk")
        is_zip = filename.lower().endswith(".zip")
        target = project.incoming()
        try:
            await _receive(request, target, filename, MAX_ZIP_BYTES if is_zip else MAX_FILE_BYTES)
            if is_zip:
                return await run_in_threadpool(project.add_zip, cls or None, filename, target)
            stored = await run_in_threadpool(project.add_image, cls, filename, target)
            return {"added": 1, "skipped": [], "stored": stored}
        finally:
            target.unlink(missing_ok=True)

    @app.post("/api/projects/{name}/texts")
    async def texts(name: str, request: Request) -> dict[str, Any]:
        body = await _json(request)
        project = work.get(name)
        added = project.add_texts(str(body.get("cls", "")), str(body.get("text", "")).splitlines())
        return {"added": added}

    @app.post("/api/projects/{name}/import")
    async def import_path(name: str, request: Request) -> dict[str, Any]:
        path = Path(str((await _json(request)).get("path", "")).strip()).expanduser()
        return await run_in_threadpool(work.get(name).import_path, path)

    @app.post("/api/projects/{name}/jobs")
    async def start(name: str, request: Request) -> dict[str, Any]:
        body = await _json(request)
        project = work.get(name)
        kind = str(body.get("kind", "train"))
        if kind == "train":
            _check_trainable(project)
        elif not _trained(project) and kind == "export":
            raise WukongError(f"{project.name}: train a model first")
        options = {k: body[k] for k in ("strategy", "preset") if body.get(k)}
        jobs.start(project, kind, options)
        return describe(project)

    @app.post("/api/projects/{name}/cancel")
    async def cancel(name: str) -> dict[str, Any]:
        project = work.get(name)
        await run_in_threadpool(jobs.cancel, project)
        return describe(project)

    @app.post("/api/projects/{name}/predict")
    async def predict(name: str, request: Request) -> dict[str, Any]:
        project = work.get(name)
        model = await run_in_threadpool(loaded, project)
        if project.modality == "text":
            text = str((await _json(request)).get("text", "")).strip()
            if not text:
                raise WukongError("nothing to predict: type some text")
            item: Any = text
        else:
            item = await read_body(request)  # bounded, as the server's
        row = (await run_in_threadpool(model.predict_records, [item], TOP_K))[0]
        if "error" in row:
            raise WukongError(f"the {project.modality} given: {row['error']}")
        return row

    @app.put("/api/projects/{name}/pool")
    async def add_unlabelled(name: str, request: Request, filename: str) -> dict[str, Any]:
        project = work.get(name)
        if project.modality != "image":
            raise WukongError(f"{project.name} is a text project: paste lines")
        target = project.incoming()
        try:
            await _receive(request, target, filename, MAX_FILE_BYTES)
            stored = await run_in_threadpool(project.add_unlabelled_image, filename, target)
            return {"added": 1, "stored": stored, "pool": len(project.pool_items())}
        finally:
            target.unlink(missing_ok=True)

    @app.post("/api/projects/{name}/pool/texts")
    async def add_unlabelled_texts(name: str, request: Request) -> dict[str, Any]:
        project = work.get(name)
        added = project.add_unlabelled_texts(str((await _json(request)).get("text", "")).splitlines())
        return {"added": added, "pool": len(project.pool_items())}

    @app.get("/api/projects/{name}/pool/{item}")
    async def pool_image(name: str, item: str) -> FileResponse:
        project = work.get(name)
        if project.modality != "image" or item not in project.pool_items():
            raise WukongError(f"{item[:80]!r}: not among the examples waiting for a label")
        return FileResponse(project.pool / item)

    @app.get("/api/projects/{name}/suggest")
    async def suggest(name: str, n: int = 8) -> dict[str, Any]:
        """The pool's examples that would teach the model most (``wukong.suggest``), for the page to label."""
        from wukong.quality.suggest import suggest as rank

        project = work.get(name)
        model = await run_in_threadpool(loaded, project)
        items = project.pool_items()
        if not items:
            raise WukongError("no examples waiting for a label: add some without a class first")
        inputs = [str(project.pool / i) for i in items] if project.modality == "image" else items
        rows = await run_in_threadpool(rank, model, inputs, max(1, min(n, 50)))
        for row in rows:  # the pool's own names, which /label takes
            row["item"] = Path(row.pop("input")).name if project.modality == "image" else row.pop("input")
        return {"pool": len(items), "suggestions": rows}

    @app.post("/api/projects/{name}/label")
    async def label(name: str, request: Request) -> dict[str, Any]:
        body = await _json(request)
        project = work.get(name)
        await run_in_threadpool(project.label, str(body.get("item", "")), str(body.get("cls", "")))
        return describe(project)

    @app.get("/api/projects/{name}/report")
    async def report(name: str) -> FileResponse:
        return _file(work.get(name).model / "report.html", "train a model first")

    @app.get("/api/projects/{name}/audit")
    async def audit_page(name: str) -> FileResponse:
        return _file(work.get(name).root / "audit" / "audit.html", "run the audit first")

    @app.get("/api/projects/{name}/download/model.zip")
    async def download_model(name: str) -> FileResponse:
        project = work.get(name)
        if not _trained(project):
            raise WukongError(f"{project.name}: train a model first")
        archive = await run_in_threadpool(_zip_model, project)
        return FileResponse(archive, filename=f"{project.name}-model.zip")

    @app.get("/api/projects/{name}/download/model.onnx")
    async def download_onnx(name: str) -> FileResponse:
        project = work.get(name)
        return _file(project.root / "exports" / "model.onnx", "export it first", f"{project.name}.onnx")

    def describe(project: Project) -> dict[str, Any]:
        view: dict[str, Any] = {"name": project.name, "modality": project.modality}
        view["classes"] = project.classes()
        view["job"] = jobs.state(project)
        view["trained"] = _trained(project)
        retraining = view["job"]["state"] == "running" and view["job"]["kind"] == "train"
        if view["trained"] and not retraining:
            metrics = json.loads((project.model / "metrics.json").read_text(encoding="utf-8"))
            keep = ("val_accuracy", "strategy", "strategy_reason", "backbone", "train_seconds", "classes")
            view["model"] = {k: metrics[k] for k in keep if k in metrics}
            skipped = project.model / "skipped.json"
            view["model"]["skipped"] = json.loads(skipped.read_text(encoding="utf-8")) if skipped.exists() else []
            view["serve_command"] = f"wukong serve {project.model} --port 8000"
        view["pool"] = len(project.pool_items())
        view["audit"] = (project.root / "audit" / "audit.html").exists()
        view["onnx"] = (project.root / "exports" / "model.onnx").exists()
        return view

    def loaded(project: Project) -> Any:
        import wukong

        if not _trained(project):
            raise WukongError(f"{project.name}: train a model first")
        stamp = (project.model / "config.json").stat().st_mtime_ns
        if project.name not in models or models[project.name][0] != stamp:
            model = wukong.load(project.model)
            if getattr(model, "open_set_", None) is not None:
                model.set_params(reject_unknown=True)
            models[project.name] = (stamp, model)
        return models[project.name][1]

    return app


def _trained(project: Project) -> bool:
    return (project.model / "config.json").is_file() and (project.model / "metrics.json").is_file()


def _check_trainable(project: Project) -> None:
    classes = project.classes()
    if len(classes) < 2:
        raise WukongError(f"{project.name}: make at least two classes before training")
    empty = [name for name, count in classes.items() if count == 0]
    if empty:
        raise WukongError(f"class {empty[0]!r} has no examples: add some, or remove the class")
    few = [name for name, count in classes.items() if count < 2]
    if few:
        raise WukongError(f"class {few[0]!r} has one example: add at least one more (some are kept for validation)")


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise Refused(400, f"send a JSON object ({exc})") from None
    if not isinstance(body, dict):
        raise Refused(400, "send a JSON object")
    return body


async def _receive(request: Request, target: Path, filename: str, limit: int) -> None:
    """The body into ``target``; past ``limit`` bytes the rest is read and dropped, then refused
    (413, naming the file): a server that closed the connection on a client still sending would
    lose the answer with it."""
    kind = "zip" if limit == MAX_ZIP_BYTES else "file"
    declared = request.headers.get("content-length", "")
    size = 0
    over = declared.isdigit() and int(declared) > limit
    with open(target, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            over = over or size > limit
            if not over:
                out.write(chunk)
    if over:
        raise Refused(413, f"{filename}: over the {limit // 1024**2} MB limit of one {kind}")
    if not size:
        raise Refused(400, f"{filename}: an empty file")


def _file(path: Path, missing: str, download: str | None = None) -> FileResponse:
    if not path.is_file():
        raise WukongError(f"{path.name}: not there yet; {missing}")
    return FileResponse(path, filename=download) if download else FileResponse(path)


def _zip_model(project: Project) -> Path:
    folder = project.root / "downloads"
    folder.mkdir(exist_ok=True)
    tmp = folder / "model.zip.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(project.model.rglob("*")):
            if file.is_file():
                archive.write(file, Path("model") / file.relative_to(project.model))
    shutil.move(tmp, folder / "model.zip")
    return folder / "model.zip"
