"""`python -m app.dashboard`: serve the Streamlit dashboard (`streamlit run app/dashboard/app.py`).

The flags below are the settings the dashboard reads; they reach the page as the TELEMETRY_*
variables they stand for (the page reads only the environment, so Streamlit's own test harness and
`streamlit run` configure it the same way). Any other argument, e.g. `--server.port 8502`, goes to
`streamlit run`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.common.settings import Settings, command_line, env_name

APP = Path(__file__).with_name("app.py")


def main(argv: list[str] | None = None) -> int:
    parser = command_line("dashboard", __doc__)
    args, streamlit_args = parser.parse_known_args(argv)
    Settings.from_args(args)  # a bad value fails here, before Streamlit starts
    given = {env_name(name): value for name, value in vars(args).items() if value is not None}
    command = [sys.executable, "-m", "streamlit", "run", str(APP), *streamlit_args]
    os.execve(sys.executable, command, os.environ | given)


if __name__ == "__main__":
    sys.exit(main())
