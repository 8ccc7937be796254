"""The README's configuration table documents every setting, with its real default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from app.common.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_once() -> None:
    documented = re.findall(r"^\| `(TELEMETRY_[A-Z0-9_]+)` \|", README.read_text(), flags=re.MULTILINE)
    expected = [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
    assert sorted(documented) == sorted(expected)


def test_documented_scalar_defaults_are_the_real_ones() -> None:
    rows = dict(re.findall(r"^\| `(TELEMETRY_[A-Z0-9_]+)` \| `([^`]*)` \|", README.read_text(), re.MULTILINE))
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        shown = rows.get(ENV_PREFIX + field.name.upper())
        value = getattr(defaults, field.name)
        if shown is None or isinstance(value, tuple) or field.name.endswith(("_dir", "_file")):
            continue
        assert Settings.from_env({ENV_PREFIX + field.name.upper(): shown}) == defaults, field.name
