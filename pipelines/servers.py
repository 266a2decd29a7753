"""The local UI servers (MLflow's and Prefect's) and the schedule run as child sessions.

:func:`run_ui_server` starts a server's command in a process group of its own, says
where it is once its health URL answers, and on Ctrl-C or SIGTERM stops the whole
group (the server and every worker it forked), so no process keeps the port.
:func:`run_supervised` does the same for a command that stops its own children in
order when asked (``creditx schedule`` and its flow runs). :func:`running_server` runs a
server (the demo's API) for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

import httpx

from pipelines.errors import StoreUnavailableError

# How long a stopped server may take to exit before its group is killed.
_STOP_GRACE_S = 10.0


def answers(url: str, timeout: float = 0.5) -> bool:
    """Return whether ``url`` answers 2xx within ``timeout`` seconds."""
    try:
        return httpx.get(url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


def port_in_use(host: str, port: int) -> bool:
    """Return whether something already listens on ``host:port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def run_ui_server(
    name: str,
    command: Sequence[str],
    health_url: str,
    *,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], None] = lambda: None,
    startup_timeout: float = 300.0,
) -> int:
    """Run ``command`` until it exits or this process is asked to stop; return its code.

    Parameters
    ----------
    name
        The server's name in messages.
    command
        The server's command line.
    health_url
        A URL that answers 2xx once the server serves.
    env
        The server's environment; this process's by default.
    ready
        Called once ``health_url`` answers (to print where the UI is).
    startup_timeout
        Seconds to wait for ``health_url`` before giving up and stopping the server.

    Raises
    ------
    StoreUnavailableError
        If the server exits or does not answer within ``startup_timeout``.
    """
    process = subprocess.Popen(
        list(command), env=None if env is None else dict(env), start_new_session=True
    )
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        _signal_group(process, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not _serving(process, name, health_url, stopping, startup_timeout):
            return _wait(process)
        ready()
        while process.poll() is None and not stopping:
            time.sleep(0.25)
        return _wait(process) if stopping else int(process.returncode)
    finally:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            _wait(process)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serving(
    process: subprocess.Popen[bytes],
    name: str,
    health_url: str,
    stopping: list[int],
    startup_timeout: float,
) -> bool:
    # True once the server answers; False if asked to stop before it did
    began = time.monotonic()
    while not answers(health_url):
        if stopping:
            return False
        if process.poll() is not None:
            raise StoreUnavailableError(name, health_url, f"exited with {process.returncode}")
        if time.monotonic() - began > startup_timeout:
            waited = f"no answer after {startup_timeout:.0f} s"
            raise StoreUnavailableError(name, health_url, waited)
        time.sleep(0.25)
    return True


def run_supervised(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stop_grace: float = 60.0,
) -> int:
    """Run ``command`` in a session of its own until it exits or this process is stopped.

    A terminal's Ctrl-C reaches this process only; on it, or on SIGTERM, the command
    gets one SIGTERM and ``stop_grace`` seconds to stop what it started in order (a
    second signal stops its whole session at once). Whatever of its session outlives
    it is then killed, so no process is left behind. Returns the command's exit code,
    0 when it stopped because it was asked to.
    """
    process = subprocess.Popen(
        list(command), env=None if env is None else dict(env), start_new_session=True
    )
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        if len(stopping) == 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        else:
            _signal_group(process, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        began: float | None = None
        while process.poll() is None:
            if stopping and began is None:
                began = time.monotonic()
            if began is not None and time.monotonic() - began > stop_grace:
                _signal_group(process, signal.SIGKILL)
            time.sleep(0.1)
        code = int(process.returncode)
        return 0 if stopping and code in (0, -signal.SIGTERM) else code
    finally:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
        _wait(process)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _wait(process: subprocess.Popen[bytes]) -> int:
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
    # Workers the server forked outlive it unless the whole group goes.
    _signal_group(process, signal.SIGKILL)
    return 0


@contextlib.contextmanager
def running_server(
    name: str,
    command: Sequence[str],
    health_url: str,
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    startup_timeout: float = 120.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in a process group of its own, yield it once ``health_url``
    answers, and stop the whole group on leaving (SIGTERM, then SIGKILL after a grace).

    Its output goes to ``log`` (appended), or to this process's without one. Raises
    :class:`StoreUnavailableError` if the server exits or does not answer within
    ``startup_timeout`` seconds.
    """
    with contextlib.ExitStack() as files:
        output = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = files.enter_context(log.open("ab"))
        process = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        try:
            _serving(process, name, health_url, [], startup_timeout)
            yield process
        finally:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
            _wait(process)
