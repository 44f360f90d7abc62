"""Load test of the Space on CPU: N concurrent gradio_client users each make an avatar and a short video.

    python benchmarks/load.py [--users 8] [--size 256] [--fps 12] [--seconds 1] [--write]

Starts ``app.py`` as a server process with its own temporary folder, submits all jobs at once and
checks that every job completes, that the queue reported positions, that the server's peak RSS
(process tree, sampled every 0.25 s) stays under ``--max-rss-gb``, and that no temporary file made by a
request is left once the server has shut down. ``--write`` appends the figures to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from gradio_client import Client, handle_file
from results import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and its children, bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``."""
    return [p for p in folder.rglob("*") if p.is_file()]


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> Client:
    """A client once the server answers (the app imports torch and builds the UI first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(1.0)
    raise TimeoutError(f"no server at {url} after {timeout:.0f} s")


def user(client: Client, photo: Path, args, record: dict) -> None:
    """One user: submit /generate, watch the job's status until it ends, keep what was seen."""
    start = time.monotonic()
    job = client.submit(handle_file(str(photo)), "fit", True, "wave", None, args.size, args.fps, args.seconds,
                        "#ffffff", "auto", api_name="/generate")
    ranks = []
    while not job.done():
        status = job.status()
        if status.rank is not None:
            ranks.append(status.rank)
        time.sleep(0.2)
    try:
        outputs = job.result()
        video = outputs[3]["video"] if isinstance(outputs[3], dict) else outputs[3]
        record.update(ok=video is not None and Path(video).is_file(), error=None)
    except Exception as e:
        record.update(ok=False, error=f"{type(e).__name__}: {e}")
    record.update(seconds=time.monotonic() - start, ranks=ranks)


def main() -> int:
    """Run the load test; returns the process exit code (0 when every check passes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--max-rss-gb", type=float, default=6.0)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()

    photos = sorted(p for p in (ROOT / "examples").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        print("no example photos in examples/")
        return 2
    photo = photos[0]
    tmp = Path(tempfile.mkdtemp(prefix="lhm-load-"))
    port = free_port()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    log_path = tmp.parent / f"{tmp.name}.log"
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    proc = psutil.Process(server.pid)
    peak = {"rss": 0, "idle": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak["rss"] = max(peak["rss"], tree_rss(proc))
            time.sleep(0.25)

    try:
        wait_for_server(f"http://127.0.0.1:{port}/", server)
        startup = time.monotonic() - t0
        # gradio copies the UI's own images (example photos, motion previews) into its cache at start-up and
        # keeps them; only what requests leave behind counts
        static = set(files_under(tmp))
        peak["idle"] = tree_rss(proc)
        threading.Thread(target=sample, daemon=True).start()
        records = [{} for _ in range(args.users)]
        # one client per user, as separate browsers would be
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False) for _ in range(args.users)]
        t1 = time.monotonic()
        threads = [threading.Thread(target=user, args=(c, photo, args, r)) for c, r in zip(clients, records)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t1
        sampling.set()
        left_during = [p for p in files_under(tmp) if p.parts[len(tmp.parts)].startswith("lhm-space-")]
    finally:
        sampling.set()
        server.send_signal(signal.SIGINT)  # a graceful stop runs gradio's cache deletion and our atexit cleanup
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    left_after = [p for p in files_under(tmp) if p not in static]
    for path in left_after[:10]:
        print("left:", path.relative_to(tmp))
    shutil.rmtree(tmp, ignore_errors=True)

    times = sorted(r["seconds"] for r in records)
    max_rank = max((max(r["ranks"]) for r in records if r["ranks"]), default=None)
    checks = {
        "all jobs completed with a video": all(r["ok"] for r in records),
        "queue positions reported": args.users == 1 or (max_rank is not None and max_rank >= 1),
        f"peak RSS under {args.max_rss_gb:g} GB": peak["rss"] < args.max_rss_gb * 1e9,
        "no per-request folder left after the jobs": not left_during,
        "no temporary file left after shutdown": not left_after,
    }
    machine = (f"{psutil.cpu_count()} cores (`nproc`), {cpu_model()}, "
               f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, load average before "
               f"{load_before:.1f}")
    rows = [
        ("users (concurrent, one gradio_client each)", f"{args.users}"),
        ("request", f"Fit engine, `{photo.name}`, wave, {args.size}x{args.size}, {args.fps} fps, {args.seconds:g} s"),
        ("server start-up (import + UI)", f"{startup:.1f} s"),
        ("all jobs done (wall)", f"{wall:.1f} s"),
        ("per job, first / median / last to finish", f"{times[0]:.1f} / {times[len(times) // 2]:.1f} / {times[-1]:.1f} s"),
        ("highest queue position reported", f"{max_rank}"),
        ("server RSS idle / peak (process tree)", f"{peak['idle'] / 1e9:.2f} / {peak['rss'] / 1e9:.2f} GB"),
        ("failed jobs", f"{sum(not r['ok'] for r in records)}"),
        ("temporary files left after shutdown (besides the UI's own images)", f"{len(left_after)}"),
        ("UI images gradio copied into its cache at start-up and keeps", f"{len(static)}"),
    ]
    lines = ["## Space load", "",
             (f"`python benchmarks/load.py --users {args.users} --size {args.size} --fps {args.fps} "
              f"--seconds {args.seconds:g}`, {datetime.date.today()}: {machine}; the app's default queue "
              "(one job at a time), CPU only."), "",
             "| measurement | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], "",
             "Checks: " + "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in checks.items()) + ".", ""]
    for r in records:
        if r["error"]:
            print("error:", r["error"])
    print("\n".join(lines))
    print(f"server log: {log_path}")
    if args.write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n" + "\n".join(lines))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
