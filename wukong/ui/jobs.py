"""The page's long work (training, audit, ONNX export) as processes of their own (``wukong.ui.runner``).

A project has at most one job; ``project/job/`` holds what it is (``request.json``: id, kind,
options, process id), its log, its progress (``wukong.progress``) and its outcome (``result.json``).
Everything is on disk, so a reloaded page, or a restarted server, finds the job where it is: still
running, finished, or lost (its process gone without an outcome: a training lost this way is started
again with ``--resume``, from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from wukong.errors import WukongError
from wukong.ui.projects import Project
from wukong.ui.runner import command

KINDS = ("train", "audit", "export")
RELAUNCHES = 3  # times a lost training is started again before it is called failed
LOG_TAIL = 4000  # characters of the log the page is shown


class Jobs:
    """Starts, follows and cancels the jobs of every project (one server holds one of these)."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}  # started by this server: reaped with poll()

    def start(self, project: Project, kind: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise WukongError(f"job {kind!r}: choose one of {', '.join(KINDS)}")
        if self.state(project)["state"] == "running":
            raise WukongError(f"{project.name}: a job is running already; wait for it or cancel it")
        if kind == "train":
            from wukong.artifact_io import remove_work_folder, work_folder

            remove_work_folder(work_folder(project.model))  # a new training starts afresh
        folder = project.root / "job"
        folder.mkdir(exist_ok=True)
        for name in ("result.json", "progress.json", "log.txt"):
            (folder / name).unlink(missing_ok=True)
        request = {"id": uuid.uuid4().hex, "kind": kind, "options": options or {}, "started": time.time()}
        return self._launch(project, request)

    def state(self, project: Project) -> dict[str, Any]:
        """``{"state": none|running|done|failed|cancelled, "kind", "progress", "log", "command", ...}``;
        a lost training is relaunched here."""
        folder = project.root / "job"
        request = _read(folder / "request.json")
        if request is None:
            return {"state": "none"}
        result = _read(folder / "result.json")
        view = {k: request[k] for k in ("kind", "options", "started", "relaunched") if k in request}
        view["command"] = "wukong " + shlex.join(command_of(project, request))
        if result is not None and result.get("id") == request["id"]:
            view.update({k: v for k, v in result.items() if k != "id"})
        elif self._alive(request):
            view.update(state="running", progress=_read(folder / "progress.json"))
        elif request["kind"] == "train" and request.get("relaunched", 0) < RELAUNCHES:
            request = {**request, "resume": True, "relaunched": request.get("relaunched", 0) + 1}
            self._launch(project, request)
            view.update(state="running", relaunched=request["relaunched"], progress=None)
        else:
            view.update(state="failed", error="the job stopped without finishing (its log is below)")
        view["log"] = _tail(folder / "log.txt")
        return view

    def cancel(self, project: Project) -> dict[str, Any]:
        folder = project.root / "job"
        request = _read(folder / "request.json")
        if request is None or not self._alive(request):
            raise WukongError(f"{project.name}: no job is running")
        _write(folder / "result.json", {"id": request["id"], "state": "cancelled", "finished": time.time()})
        try:
            os.killpg(request["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while self._alive(request) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(request):
            os.killpg(request["pid"], signal.SIGKILL)
        return self.state(project)

    def resume_lost(self, projects: list[Project]) -> None:
        """At start-up: trainings lost with a previous server are started again."""
        for project in projects:
            self.state(project)

    def _launch(self, project: Project, request: dict[str, Any]) -> dict[str, Any]:
        folder = project.root / "job"
        env = {**os.environ, "WUKONG_PROGRESS_FILE": str(folder / "progress.json"), "PYTHONUNBUFFERED": "1"}
        with open(folder / "log.txt", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "wukong.ui.runner", str(folder), request["id"]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: cancelled whole, and outlives the server
                env=env,
                cwd=project.root,
            )
        self.children[child.pid] = child
        request = {**request, "pid": child.pid}
        _write(folder / "request.json", request)
        return {"state": "running", "kind": request["kind"]}

    def _alive(self, request: dict[str, Any]) -> bool:
        pid = request.get("pid")
        if pid is None:
            return False
        if pid in self.children:
            return self.children[pid].poll() is None
        try:  # started by an earlier server: alive if that process still runs this job
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return request["id"].encode() in cmdline


def command_of(project: Project, request: dict[str, Any]) -> list[str]:
    return command(request["kind"], project.root, request.get("options", {}), resume=request.get("resume", False))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
