"""One job of the web page, in its own process: ``python -m wukong.ui.runner JOB_DIR JOB_ID``.

The job is an ordinary ``wukong`` command (train, audit or export), so what the page does is what
the command line does; ``job/request.json`` says which, and the outcome goes to ``job/result.json``
(``{"id", "state": "done"|"failed", "error"}``). A process of its own can be cancelled (killed) and
outlives the server; a training killed with the server is started again with ``--resume``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def command(kind: str, project: Path, options: dict[str, Any], *, resume: bool) -> list[str]:
    """The ``wukong`` arguments of a job (shown in the page as the command to run it by hand)."""
    meta = json.loads((project / "project.json").read_text(encoding="utf-8"))
    data = project / "data" / "train.csv" if meta["modality"] == "text" else project / "data"
    if kind == "train":
        args = ["train", str(data), "--out", str(project / "model"), "--overwrite", "--json"]
        args += ["--strategy", options.get("strategy") or "auto"]
        if options.get("preset"):
            args += ["--preset", options["preset"]]
        return args + (["--resume"] if resume else [])
    if kind == "audit":
        return ["audit", str(data), "--out", str(project / "audit"), "--json"]
    if kind == "export":
        return ["export", str(project / "model"), "--format", "onnx", "--out", str(project / "exports" / "model.onnx")]
    raise ValueError(f"unknown job kind {kind!r}")


def run(job_dir: Path, job_id: str) -> int:
    from wukong.cli import app
    from wukong.errors import WukongError

    request = json.loads((job_dir / "request.json").read_text(encoding="utf-8"))
    args = command(request["kind"], job_dir.parent, request.get("options", {}), resume=request.get("resume", False))
    result: dict[str, Any] = {"id": job_id, "state": "done"}
    try:
        app(args=args, standalone_mode=False)
    except WukongError as exc:
        result.update(state="failed", error=str(exc))
    except OSError as exc:
        result.update(state="failed", error=f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except Exception as exc:  # noqa: BLE001 - the page shows it; the traceback is in the log
        import traceback

        traceback.print_exc()
        result.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    result["finished"] = time.time()
    tmp = job_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(job_dir / "result.json")
    return 0 if result["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2]))
