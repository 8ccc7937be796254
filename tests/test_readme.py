"""The README's configuration table is the one the settings' own metadata generates."""

from __future__ import annotations

import re
from pathlib import Path

from app.common.settings import configuration_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_configuration_table_is_generated_from_the_settings() -> None:
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if re.match(r"^\|", line))
    assert table == configuration_table(), (
        "regenerate the table: .venv/bin/python -m app.common.settings readme-table"
    )
