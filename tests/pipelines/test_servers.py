"""The UI servers' lifecycle: announced once they answer, stopped with their children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from pipelines.servers import answers, port_in_use


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _line_after(stream: Any, wanted: str) -> bool:
    return any(line.strip() == wanted for line in stream)


def test_a_ui_server_says_when_it_answers_and_stops_with_its_children_on_sigterm() -> None:
    port = _free_port()
    # A real server process standing in for MLflow's or Prefect's: Python's http.server.
    script = textwrap.dedent(
        f"""
        import sys
        from pipelines.servers import run_ui_server

        run_ui_server(
            "test",
            [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
            "http://127.0.0.1:{port}/",
            ready=lambda: print("ready", flush=True),
        )
        print("stopped", flush=True)
        """
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        # The server shares the output: read past its own lines.
        assert _line_after(runner.stdout, "ready")
        assert answers(f"http://127.0.0.1:{port}/")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
        assert _line_after(runner.stdout, "stopped")
    finally:
        if runner.poll() is None:
            runner.kill()
        if runner.stdout is not None:
            runner.stdout.close()
    deadline = time.monotonic() + 10
    while port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_in_use("127.0.0.1", port), "the server's process outlived the command"


# A command that stops its own child in order on SIGTERM, as the schedule's runner does,
# and says which signal it got; its grandchild is a process the supervisor must not leave.
_SUPERVISED = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    got = []
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    print("serving", flush=True)
    while not got:
        time.sleep(0.05)
    child.terminate()
    child.wait()
    print("stopped on", signal.Signals(got[0]).name, flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_supervised_command_is_asked_once_to_stop_and_leaves_no_process(
    signum: signal.Signals,
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pipelines.servers import run_supervised

        sys.exit(run_supervised([sys.executable, "-c", {_SUPERVISED!r}]))
        """
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert supervisor.stdout is not None
        assert _line_after(supervisor.stdout, "serving")
        family = psutil.Process(supervisor.pid).children(recursive=True)
        assert len(family) == 2  # the command, in a session of its own, and its child
        assert all(os.getsid(p.pid) != os.getsid(supervisor.pid) for p in family)
        # Ctrl-C reaches the terminal's process group, which is the supervisor's alone.
        os.killpg(supervisor.pid, signum)
        assert supervisor.wait(timeout=30) == 0
        assert _line_after(supervisor.stdout, "stopped on SIGTERM")
        assert supervisor.stderr is not None
        assert supervisor.stderr.read() == ""
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        for stream in (supervisor.stdout, supervisor.stderr):
            if stream is not None:
                stream.close()
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], "a process outlived its supervisor"
