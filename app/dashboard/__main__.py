"""`python -m app.dashboard` (the `telemetry-dashboard` command): serve the dashboard with Streamlit.

Runs Streamlit's own `streamlit run` command line in this process on streamlit_app.py. Streamlit reads
the .streamlit/config.toml beside that script, installed or not: it holds the defaults (loopback,
port 8501, headless, no usage statistics, no file watcher). The page reads its settings from the
TELEMETRY_* variables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamlit.web import cli as streamlit_cli

SCRIPT = Path(__file__).with_name("streamlit_app.py")


def streamlit_args(address: str | None, port: int | None) -> list[str]:
    args = ["run", str(SCRIPT)]
    if address is not None:
        args += ["--server.address", address]
    if port is not None:
        args += ["--server.port", str(port)]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-dashboard", description="Serve the Streamlit dashboard.")
    parser.add_argument("--address", help="listen address (default: its .streamlit/config.toml's)")
    parser.add_argument("--port", type=int, help="listen port (default: its .streamlit/config.toml's)")
    args = parser.parse_args(argv)
    # Streamlit's click command serves until SIGTERM or Ctrl-C and then exits the process itself.
    streamlit_cli.main.main(args=streamlit_args(args.address, args.port), prog_name="streamlit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
