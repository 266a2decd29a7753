"""The UI servers' lifecycle: announced once they answer, stopped with their children."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

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
