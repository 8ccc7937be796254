"""`python -m app.dashboard` (the `telemetry-dashboard` command): serve the dashboard with Streamlit.

Runs Streamlit's own `streamlit run` command line in this process on streamlit_app.py. Streamlit reads
the .streamlit/config.toml beside that script, installed or not: it holds the defaults (loopback,
port 8501, headless, no usage statistics, no file watcher). Besides --address and --port, the flags
are the settings the dashboard reads; they reach the page as the TELEMETRY_* variables they stand for
(the page reads only the environment, so Streamlit's own test harness and this command configure it
the same way).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from streamlit.web import cli as streamlit_cli

from app.common.settings import Settings, command_line, env_name

SCRIPT = Path(__file__).with_name("streamlit_app.py")


def streamlit_args(address: str | None, port: int | None) -> list[str]:
    args = ["run", str(SCRIPT)]
    if address is not None:
        args += ["--server.address", address]
    if port is not None:
        args += ["--server.port", str(port)]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = command_line("dashboard", __doc__)
    server = parser.add_argument_group("server")
    server.add_argument("--address", help="listen address (default: its .streamlit/config.toml's)")
    server.add_argument("--port", type=int, help="listen port (default: its .streamlit/config.toml's)")
    args = parser.parse_args(argv)
    Settings.from_args(args)  # a bad value fails here, before Streamlit starts
    served_by_streamlit = {"address", "port"}
    os.environ.update(
        {
            env_name(name): value
            for name, value in vars(args).items()
            if value is not None and name not in served_by_streamlit
        }
    )
    # Streamlit's click command serves until SIGTERM or Ctrl-C and then exits the process itself.
    streamlit_cli.main.main(args=streamlit_args(args.address, args.port), prog_name="streamlit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
