"""The server under load: 1,000 requests from 8 threads, 20% of them malformed, to 127.0.0.1 only.

Side by side, in one run: Wukong's server (FastAPI + uvicorn, micro-batched) and what a user would
otherwise write by hand, a standard-library ``http.server`` that calls ``predict`` per request under
a lock. Both serve the same model (EfficientNet-Lite0 ``features`` on the cat/dog photos). Writes p50
/ p99 latency, throughput, answers by status, crashes, wrong answers and the server's RSS before and
after, to ``benchmarks/results/serve.json``.

    python benchmarks/serve.py [--requests 1000] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))


def rss_mb() -> float:
    """This process's resident memory (the servers run in it, on threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def hand_written_server(model: Any) -> tuple[ThreadingHTTPServer, str]:
    """What a user writes without Wukong's server: http.server, one predict per request, a lock."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                row = model.predict_records([body])[0]
            status = 400 if "error" in row else 200
            data = json.dumps(row).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def load(url: str, photos: list[Path], expected: dict[Path, str], requests: int, threads: int) -> dict[str, Any]:
    rng = random.Random(0)
    jobs = [(rng.choice(photos), rng.random() < 0.2) for _ in range(requests)]

    def send(job: tuple[Path, bool]) -> tuple[int | str, float, bool]:
        photo, malformed = job
        body = photo.read_bytes()[: 200 if malformed else None]
        started = time.perf_counter()
        request = urllib.request.Request(f"{url}/predict", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:  # the connection failed: the server crashed or refused
            return f"connection error: {type(exc).__name__}", time.perf_counter() - started, False
        seconds = time.perf_counter() - started
        right = (status == 400) if malformed else (status == 200 and answer.get("label") == expected[photo])
        return status, seconds, right

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(send, jobs))
    wall = time.perf_counter() - started
    latencies = np.array([seconds for _, seconds, _ in results]) * 1000
    return {
        "requests": requests,
        "threads": threads,
        "malformed": sum(m for _, m in jobs),
        "by_status": {str(k): v for k, v in sorted(Counter(str(s) for s, _, _ in results).items())},
        "server_errors_5xx": sum(1 for s, _, _ in results if isinstance(s, int) and s >= 500),
        "crashes_or_connection_errors": sum(1 for s, _, _ in results if isinstance(s, str)),
        "wrong_answers": sum(1 for *_, right in results if not right),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "requests_per_second": round(requests / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()

    from wukong import ImageClassifier
    from wukong.serve import BackgroundServer, create_app

    model = ImageClassifier(progress=False).fit(DATA / "cat_dog" / "train")
    photos = sorted((DATA / "cat_dog" / "test").glob("*/*.jpg"))
    expected = dict(zip(photos, model.predict(photos), strict=True))
    report: dict[str, Any] = {
        "command": "python benchmarks/serve.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        "model": "efficientnet_lite0 features on cat/dog",
        "machine": {"cpus": os.cpu_count()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    before = rss_mb()
    with BackgroundServer(create_app(model)) as server:
        report["wukong_serve"] = load(server.url, photos, expected, args.requests, args.threads)
    report["wukong_serve"]["rss_mb_before_after"] = [before, rss_mb()]
    before = rss_mb()
    server, url = hand_written_server(model)
    try:
        report["hand_written_http_server"] = load(url, photos, expected, args.requests, args.threads)
    finally:
        server.shutdown()
    report["hand_written_http_server"]["rss_mb_before_after"] = [before, rss_mb()]
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
