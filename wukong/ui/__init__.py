"""``wukong ui``: a local web page for people who don't program.

Make a project, add examples (files, a zip, webcam snapshots, pasted lines, a folder or table on
disk), train with live progress and a cancel button, read the report and the data audit, try the
model, and take it away (the model folder, ONNX, the command that serves it). Projects live in the
work dir as ordinary Wukong data and model folders: what the page makes works from the command line.

Built on the FastAPI server of ``wukong serve`` (the ``serve`` extra) with a page of plain HTML and
JavaScript (``static/``): no UI framework to download, nothing fetched from the internet, and every
control is an ordinary element a test can drive.
"""

from __future__ import annotations

from pathlib import Path


def run_ui(workdir: str | Path, host: str = "127.0.0.1", port: int = 8080, *, token: str | None = None) -> None:
    """Serve the page until interrupted."""
    import uvicorn

    from wukong.ui.server import create_ui_app

    query = "/?token=..." if token else ""
    print(f"Wukong page on http://{host}:{port}{query} (projects in {Path(workdir).resolve()}); Ctrl-C stops it")
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: {host} is reachable from other machines and --token is not set: anyone can use the page")
    uvicorn.run(create_ui_app(workdir, token=token), host=host, port=port, log_level="warning")
