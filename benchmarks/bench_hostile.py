"""Peak memory and time of hostile inputs against a normal small one, each in a fresh process of the same run.

    nice python benchmarks/bench_hostile.py [--workdir DIR] [--code DIR ...] [--only CASE ...]

Cases (files are made in ``--workdir``, sparse where possible, so they cost little disk):

* ``small-png``: a 512x512 PNG fingerprinted as the build does (``imageio.fingerprint``) -- the baseline;
* ``sparse-png-400M``: a valid PNG followed by a 400 MiB hole, under the default 512 MiB file limit (decoded from
  disk, hashed in blocks);
* ``sparse-png-1.5G``: the same with a 1.5 GiB hole, over the limit (refused unread);
* ``rle-dicom-2000``: a 512x512 12-bit RLE Lossless DICOM of 2,000 frames (only the first is used);
* ``small-page``: a 2 KB page over HTTP from 127.0.0.1 (``HttpClient.get_page``) -- the HTTP baseline;
* ``error-page-400M``: an HTTP 403 HTML page of 400 MiB sent chunked, without Content-Length;
* ``robots-400M``: a robots.txt of 400 MiB sent chunked (its first lines disallow the URL asked for).

Each case runs in its own Python process (``--code DIR`` puts another checkout first on its path, e.g. an older
commit extracted with ``git archive``, to compare); printed per case: its outcome, wall seconds, the process's peak
RSS and that peak minus the RSS after imports, and for HTTP cases the bytes the server managed to send.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fakefiles import rle_dicom  # noqa: E402 - the same hostile DICOM the bad-input tests use

FILE_CASES = ("small-png", "sparse-png-400M", "sparse-png-1.5G", "rle-dicom-2000")
HTTP_CASES = ("small-page", "error-page-400M", "robots-400M")
BIG = 400 * 2**20


# -- inputs -----------------------------------------------------------------------------------------------------------
def _png(path: Path, hole: int = 0) -> None:
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:512, 0:512]
    Image.fromarray(((xx + yy) % 256).astype(np.uint8)).save(path)
    if hole:
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size + hole)


def make_inputs(folder: Path) -> dict[str, Path]:
    """The files of the file cases (made once per work folder)."""
    files = {"small-png": folder / "small.png", "sparse-png-400M": folder / "sparse400.png",
             "sparse-png-1.5G": folder / "sparse1500.png", "rle-dicom-2000": folder / "frames2000.dcm"}
    if not files["small-png"].exists():
        _png(files["small-png"])
        _png(files["sparse-png-400M"], BIG)
        _png(files["sparse-png-1.5G"], 1536 * 2**20)
        rle_dicom(files["rle-dicom-2000"], 2000)
    return files


# -- the local web site -----------------------------------------------------------------------------------------------
class Site:
    """127.0.0.1: ``/small`` (2 KB, with Content-Length), ``/error`` (403, 400 MiB chunked), ``/robots.txt``."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/small":
                    body = b"<html><body>" + b"<p>a normal page</p>" * 100 + b"</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    site.sent[path] = len(body)
                elif path in ("/error", "/robots.txt"):
                    head = b"User-agent: *\nDisallow: /private/\n" if path == "/robots.txt" else b"<html>"
                    site.chunked(self, path, 403 if path == "/error" else 200, head)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def chunked(self, h: BaseHTTPRequestHandler, path: str, status: int, head: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "text/html" if path == "/error" else "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        block, sent = b"#" * 65536 if path == "/robots.txt" else b"<!-- pad -->" * 5461, 0
        try:
            data = head
            while sent < BIG:
                data = data or block
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += len(data)
                data = b""
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            self.sent[path] = sent
            h.close_connection = True


# -- one case, in the child process -----------------------------------------------------------------------------------
def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def run_case(case: str, workdir: Path, url: str) -> dict:
    """Run ``case`` here and return its outcome, seconds and RSS figures (KB)."""
    from cxrcurate.fetch.http import HttpClient, HttpConfig
    from cxrcurate.imageio import fingerprint

    files = make_inputs(workdir) if case in FILE_CASES else {}
    before = _rss_kb()
    started = time.perf_counter()
    try:
        if case in FILE_CASES:
            fp = fingerprint(files[case])
            outcome = f"ok {fp['width']}x{fp['height']}" + (f", {fp['frames']} frames" if "frames" in fp else "")
        else:
            config = HttpConfig(delay=0, retries=0, obey_robots=case == "robots-400M")
            with HttpClient(config) as client:
                if case == "robots-400M":
                    client.require_allowed(f"{url}/private/x")
                    outcome = "ok (allowed?)"
                else:
                    page = client.get_page(f"{url}/{'small' if case == 'small-page' else 'error'}")
                    outcome = f"ok {len(page.body):,} bytes"
    except Exception as exc:  # noqa: BLE001 - the outcome is the figure
        outcome = f"{type(exc).__name__}: {str(exc)[-90:]}"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": case, "outcome": outcome, "seconds": seconds, "peak_kb": peak, "after_imports_kb": before}


# -- the parent: one child per case -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="where the input files go (default: a temporary folder)")
    ap.add_argument("--code", type=Path, action="append", default=[],
                    help="another checkout to run the cases with too (repeatable); this one always runs")
    ap.add_argument("--only", action="append", choices=FILE_CASES + HTTP_CASES, help="run only these cases")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.workdir, args.url)))
        return
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-hostile-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    make_inputs(args.workdir)  # here, so no child's figures include making them
    site = Site()
    cases = args.only or list(FILE_CASES + HTTP_CASES)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; one fresh process per case; inputs in "
          f"{args.workdir}")
    print(f"{'code':10s} {'case':16s} {'seconds':>8s} {'peak RSS MB':>11s} {'+ over imports':>14s} "
          f"{'served MB':>9s}  outcome")
    for code in [ROOT, *args.code]:
        env = {**os.environ, "PYTHONPATH": str(code)}
        for case in cases:
            site.sent.clear()
            proc = subprocess.run([sys.executable, __file__, "--child", case, "--workdir", str(args.workdir),
                                   "--url", site.url], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{code.name[:10]:10s} {case:16s} child failed ({proc.returncode}): {proc.stderr[-300:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            time.sleep(0.2)  # let the server thread record what it sent
            served = sum(site.sent.values()) / 2**20 if case in HTTP_CASES else float("nan")
            print(f"{code.name[:10]:10s} {case:16s} {r['seconds']:8.2f} {r['peak_kb'] / 1024:11.0f} "
                  f"{(r['peak_kb'] - r['after_imports_kb']) / 1024:14.0f} {served:9.1f}  {r['outcome']}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
