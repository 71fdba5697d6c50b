"""Start a JupyterLab server for a test, on a free loopback port with its own config, and make
sure nothing it started outlives the test (used by test_cli.py and test_browser.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_env(home: Path) -> dict[str, str]:
    """The test's environment with Jupyter's config, data, runtime and settings in `home`, so the
    server neither reads nor writes the user's; plotting as in a learner's kernel (inline)."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        env[var] = str(home / sub)
    return env


def lab_options(port: int, token: str) -> list[str]:
    """Loopback only, a known token, no browser, no update checks or news from the network."""
    return [
        "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None",
    ]


def start(command: list[str], home: Path) -> subprocess.Popen:
    """Run `command` with `lab_env(home)`, its output going to home/lab.log (a pipe nobody reads
    could fill up and stall the server)."""
    with open(home / "lab.log", "wb") as log:
        return subprocess.Popen(command, env=lab_env(home), stdout=log, stderr=subprocess.STDOUT)


def read_log(home: Path) -> str:
    return (home / "lab.log").read_text(errors="replace")


def wait_until_serving(process: subprocess.Popen, home: Path, port: int, token: str, timeout_s: float = 60.0) -> None:
    """Return once the server answers its status API; raise (with its log) if it died or is slow."""
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {process.returncode}:\n{read_log(home)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer on port {port} within {timeout_s:.0f} s:\n{read_log(home)}")


def processes_mentioning(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker` (Linux /proc): a test's unique
    port or directory finds every process it started (a kernel's connection file lies in the
    runtime directory; Chromium's profile in the test's directory)."""
    found = []
    if not Path("/proc").is_dir():
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "Z" in state.split()[1]:  # a zombie has already stopped; its parent only has to reap it
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def stop(process: subprocess.Popen, marker: str) -> None:
    """Stop the server and, should anything outlive it, every process carrying `marker`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pid in processes_mentioning(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
