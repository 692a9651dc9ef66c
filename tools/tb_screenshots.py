"""Serve a log folder with TensorBoard on loopback and take headless Chromium screenshots of its tabs.

    python tools/tb_screenshots.py tb_logs --out docs/tensorboard

Needs a Chromium (Debian: `apt-get install chromium`). TensorBoard listens on 127.0.0.1 only and is stopped at the
end; the script waits for it to have loaded the runs (no fixed sleeps) and gives the page time to draw its charts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# tab -> URL fragment. SCALARS: the Keras-style curves, unsmoothed, every point in view.
# HPARAMS is shot wider (--hparams-size): its table has a column per setting and metric.
TABS = {
    "scalars": "#scalars&_smoothingWeight=0&_ignoreYOutliers=false&tagFilter=%5Eepoch_",
    "hparams": "#hparams",
    "images": "#images",
}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_runs(base: str, server: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """Poll TensorBoard's run list until it has runs (it loads the folder in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"tensorboard exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/data/runs", timeout=5) as r:
                runs = json.loads(r.read())
            if runs:
                return list(runs)
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"tensorboard showed no runs within {timeout:.0f} s")


def shoot(browser: str, url: str, path: Path, size: str, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
               f"--screenshot={path}", url]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    if not path.is_file() or path.stat().st_size == 0:
        raise SystemExit(f"{browser} wrote no screenshot for {url}")


@contextlib.contextmanager
def serve(logdir: Path, timeout: float) -> Iterator[str]:
    """TensorBoard on a free loopback port, until the block ends; yields its address once it has the runs."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port), "--samples_per_plugin", "images=100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        runs = wait_for_runs(base, server, timeout)
        print(f"tensorboard at {base}: {len(runs)} runs of {logdir}")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)


def copy_runs(logdir: Path, pattern: str, into: Path) -> int:
    """The event files of the run folders whose path (relative to logdir) matches pattern, copied into ``into``:
    TensorBoard's own run filter is not settable from the URL on these tabs."""
    n = 0
    for event in logdir.rglob("events.out.tfevents.*"):
        rel = event.relative_to(logdir)
        if re.search(pattern, str(rel.parent)):
            (into / rel.parent).mkdir(parents=True, exist_ok=True)
            shutil.copy2(event, into / rel)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/tensorboard"))
    ap.add_argument("--run", default="", help="Regex of the run folders SCALARS and IMAGES show (default: all).")
    ap.add_argument("--size", default="1400,900", help="Window size W,H in pixels.")
    ap.add_argument("--hparams-size", default="2400,700", help="Window size for HPARAMS.")
    ap.add_argument("--budget-ms", type=int, default=20000, help="Virtual time the page gets to load and draw.")
    ap.add_argument("--timeout", type=float, default=300, help="Seconds to wait for TensorBoard to load the runs.")
    args = ap.parse_args()
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    if not args.logdir.is_dir():
        raise SystemExit(f"{args.logdir}: no such folder")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        chosen = Path(tmp) / args.logdir.name
        if not copy_runs(args.logdir, args.run, chosen):
            raise SystemExit(f"--run {args.run!r}: no run folder under {args.logdir} matches")
        for tab, fragment in TABS.items():
            with serve(args.logdir if tab == "hparams" else chosen, args.timeout) as base:
                path = args.out / f"{tab}.png"
                size = args.hparams_size if tab == "hparams" else args.size
                shoot(browser, f"{base}/{fragment}", path.resolve(), size, args.budget_ms)
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
