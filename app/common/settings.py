"""One typed configuration object for every process, built from environment variables.

A systemd `EnvironmentFile`, `make demo` and a developer's shell configure the pipeline the same
way. Each field `foo_bar` is read from `TELEMETRY_FOO_BAR`; `add_arguments`/`from_args` expose
the same fields as `--foo-bar` command-line flags, which win over the environment.

The fields are grouped by the part of the pipeline that owns them (one frozen dataclass each);
`Settings` composes the groups, so `settings.<field>` works everywhere and a function can be typed
against the one group it needs. Every field carries its help text and the services that read it:
that metadata is the one source of the command-line help, the README's configuration table and
the pipeline role's restart-on-change mapping (`python -m app.common.settings --help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "TELEMETRY_"
# The systemd units of the pipeline role and the services' command lines.
SERVICES = ("producer", "processing", "dashboard", "reconcile")
# The producer's trade sources (TELEMETRY_SOURCE).
SOURCES = ("binance", "binance_ws", "replay")
REPO_ROOT = Path(__file__).resolve().parents[2]


def setting(default: Any, *, help: str, read_by: set[str]) -> Any:
    """A settings field: its default, one line of help, and the services that read it."""
    unknown = read_by - set(SERVICES)
    if unknown or not read_by:
        raise ValueError(f"read_by must name some of {SERVICES}, not {sorted(unknown)}")
    return dataclasses.field(default=default, metadata={"help": help, "read_by": frozenset(read_by)})


# --- Durations ------------------------------------------------------------------------------------
# Spark parses the watermark and the trigger interval with its interval syntax (SparkIntervalUtils.
# stringToInterval; "interval ..." goes through the SQL parser, which ends in the same function):
# an optional "interval" prefix, then one or more "<number> <unit>[s]" terms, case-insensitive,
# fractions for seconds only (up to 9 digits). Months and years are refused here: they have no
# fixed length in milliseconds (the trigger refuses them too).
_MICROS = {
    "week": 7 * 86_400_000_000,
    "day": 86_400_000_000,
    "hour": 3_600_000_000,
    "minute": 60_000_000,
    "second": 1_000_000,
    "millisecond": 1_000,
    "microsecond": 1,
}
_NUMBER = re.compile(r"([+-]?)(\d+)(?:\.(\d{0,9}))?|([+-]?)\.(\d{1,9})")
_UNIT = re.compile(r"(year|month|week|day|hour|minute|second|millisecond|microsecond)s?")
DURATION_FORM = "'10 seconds', '500 milliseconds', '1 minute 30 seconds' or 'interval 10 seconds'"


@dataclass(frozen=True)
class Duration:
    """A duration as the user wrote it (what Spark is given) and its length in milliseconds."""

    text: str
    ms: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        words = text.lower().split()
        if words[:1] == ["interval"]:
            words = words[1:]
        if not words or len(words) % 2:
            raise ValueError(f"not a duration like {DURATION_FORM}: {text!r}")
        micros = 0
        for number, unit in zip(words[::2], words[1::2], strict=True):
            micros += _term_micros(number, unit, text)
        if micros < 0:
            raise ValueError(f"a duration cannot be negative: {text!r}")
        return cls(text, micros // 1000)

    def __str__(self) -> str:
        return self.text


def _term_micros(number: str, unit: str, text: str) -> int:
    number_match, unit_match = _NUMBER.fullmatch(number), _UNIT.fullmatch(unit)
    if number_match is None or unit_match is None:
        raise ValueError(f"not a duration like {DURATION_FORM}: {text!r}")
    name = unit_match.group(1)
    if name not in _MICROS:
        raise ValueError(f"months and years have no fixed length, use days or weeks: {text!r}")
    sign, whole, fraction, point_sign, point_fraction = number_match.groups()
    if point_fraction is not None:
        sign, whole, fraction = point_sign, "0", point_fraction
    if fraction and name != "second":
        raise ValueError(f"only seconds may have a fraction: {text!r}")
    micros = int(whole) * _MICROS[name] + int((fraction or "").ljust(9, "0")) // 1000
    return -micros if sign == "-" else micros


def event_time_lead_ms(lead: Duration | None, watermark_delay: Duration) -> int:
    """The producer's event-time lead: the setting, or half the job's watermark when it is unset.

    The watermark is shared by all symbols, so one symbol's catch-up running further ahead than
    half of it could make the others' trades late.
    """
    return lead.ms if lead is not None else watermark_delay.ms // 2


# --- The settings, by owner -----------------------------------------------------------------------
# Defaults that are objects (dataclass field defaults must not be calls).
_SAMPLE_FILE = REPO_ROOT / "app/producer/sample/BTCUSDT-trades-sample.csv"
_JARS_DIR = REPO_ROOT / ".cache" / "jars" / "spark"
_WATERMARK = Duration("10 seconds", 10_000)
# A micro-batch cost the job 350-750 ms on 2 cores however few trades it held (planning, two
# stages, the processor when it ran in a Python worker, the state commit), so a 500 ms trigger ran
# batches back to back with a "falling behind" warning for most of them. At 1 s they fit (make
# bench: 0 of 25 batches over it at 300 trades/s), for 185 ms more latency (REST source p50
# 1,114 -> 1,299 ms).
_TRIGGER_INTERVAL = Duration("1 second", 1000)


class _Group:
    def __post_init__(self) -> None:
        # A duration given as text (a test, or code building Settings directly) is parsed here,
        # once, so every Duration field holds its milliseconds.
        for name, kind in _field_types(type(self)).items():
            value = getattr(self, name)
            if kind in (Duration, Duration | None) and isinstance(value, str):
                try:
                    object.__setattr__(self, name, Duration.parse(value))
                except ValueError as exc:
                    raise ValueError(f"invalid {env_name(name)}: {exc}") from None


@dataclass(frozen=True)
class KafkaSettings(_Group):
    """The broker and the topic names: shared by every service."""

    kafka_bootstrap_servers: str = setting(
        "127.0.0.1:9092", help="Kafka brokers (host:port, comma-separated)", read_by=set(SERVICES)
    )
    raw_topic: str = setting(
        "raw_crypto_trades",
        help="one message per trade, key = symbol",
        read_by={"producer", "processing"},
    )
    aggregates_topic: str = setting(
        "aggregated_crypto_stats",
        help="window rows, key = `symbol|window_start`",
        read_by={"processing", "dashboard", "reconcile"},
    )
    dead_letter_topic: str = setting(
        "raw_crypto_trades_dlq",
        help="records that failed validation, with the reason",
        read_by={"processing", "dashboard"},
    )
    late_trades_topic: str = setting(
        "raw_crypto_trades_late",
        help="valid trades that arrived after their window was final, key = `symbol|trade_id`",
        read_by={"processing"},
    )
    metrics_topic: str = setting(
        "pipeline_metrics", help="producer counters and Spark batch figures", read_by=set(SERVICES)
    )
    reconciliation_topic: str = setting(
        "window_reconciliations",
        help="final windows checked against the exchange's 1-minute klines, key = `symbol|window_start`",
        read_by={"reconcile", "dashboard"},
    )
    kafka_security_protocol: str = setting(
        "PLAINTEXT",
        help="`PLAINTEXT`, `SSL` (TLS) or `SASL_SSL` (TLS and a SCRAM-SHA-512 login), for every client",
        read_by=set(SERVICES),
    )
    kafka_ssl_ca_file: Path | None = setting(
        None,
        help="PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL)",
        read_by=set(SERVICES),
    )
    kafka_sasl_username: str | None = setting(None, help="SCRAM user name (SASL_SSL)", read_by=set(SERVICES))
    kafka_sasl_password_file: Path | None = setting(
        None,
        help="file holding the SCRAM password alone (SASL_SSL); no access for others (mode 0600 or 0640)",
        read_by=set(SERVICES),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = kafka_security_problem(self)
        if problem is not None:
            raise ValueError(problem)


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")
# A secret file may be read by its owner and its group (root:telemetry 0640), never by others, and
# written by its owner alone.
LOOSE_SECRET_MODE = 0o027


def kafka_security_problem(settings: KafkaSettings) -> str | None:
    """Why the Kafka security settings cannot work (a file missing or open to others), or None.

    Checked when the settings are built, so a service refuses to start rather than failing at its
    first connection; the files are only looked at, the password is read by app.common.kafka_security.
    """
    protocol = settings.kafka_security_protocol
    name = env_name("kafka_security_protocol")
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        return f"invalid {name}={protocol!r}: use one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}"
    sasl = {
        "kafka_sasl_username": settings.kafka_sasl_username,
        "kafka_sasl_password_file": settings.kafka_sasl_password_file,
    }
    if protocol != "SASL_SSL":
        given = [env_name(field) for field, value in sasl.items() if value is not None]
        if given:
            return f"{', '.join(given)} set but {name}={protocol}: a SCRAM login needs SASL_SSL"
    if protocol == "PLAINTEXT":
        return None
    needed = {"kafka_ssl_ca_file": settings.kafka_ssl_ca_file} | (sasl if protocol == "SASL_SSL" else {})
    missing = [env_name(field) for field, value in needed.items() if value is None]
    if missing:
        return f"{name}={protocol} needs {' and '.join(missing)}"
    assert settings.kafka_ssl_ca_file is not None
    problem = _file_problem(settings.kafka_ssl_ca_file, "kafka_ssl_ca_file", secret=False)
    if problem is None and settings.kafka_sasl_password_file is not None:
        problem = _file_problem(settings.kafka_sasl_password_file, "kafka_sasl_password_file", secret=True)
    return problem


def _file_problem(path: Path, field: str, *, secret: bool) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"{env_name(field)}={path}: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return f"{env_name(field)}={path} is not a regular file"
    if secret and mode & LOOSE_SECRET_MODE:
        return (
            f"{env_name(field)}={path} is mode {stat.S_IMODE(mode):04o}: a secret must not be readable by "
            f"other users nor writable by its group (chmod 0600 {path})"
        )
    if not os.access(path, os.R_OK):
        return f"{env_name(field)}={path} is not readable by this user"
    return None


@dataclass(frozen=True)
class ProducerSettings(_Group):
    """What the producer fetches, from where, and how fast."""

    symbols: tuple[str, ...] = setting(
        ("BTCUSDT",), help="comma-separated symbols", read_by={"producer", "dashboard"}
    )
    source: str = setting(
        "binance",
        help="`binance` (REST API v3 polling), `binance_ws` (trade WebSocket stream, REST back-fill) or "
        "`replay` (a Binance trades CSV)",
        # Replayed trades have no exchange klines to be checked against.
        read_by={"producer", "reconcile"},
    )
    binance_base_url: str = setting(
        "https://api.binance.com",
        help="API base URL (a mirror, or a test server)",
        read_by={"producer", "reconcile"},
    )
    binance_ws_url: str = setting(
        "wss://stream.binance.com:9443",
        help="WebSocket stream base URL, for the `binance_ws` source",
        read_by={"producer"},
    )
    # Binance sends a busy symbol's trades every second or so; a connection this quiet is presumed
    # stalled and is replaced (its REST back-fill then fetches whatever was missed).
    stream_silence_s: float = setting(
        30.0,
        help="reconnect the `binance_ws` stream after this many seconds without a frame",
        read_by={"producer"},
    )
    replay_file: Path = setting(
        _SAMPLE_FILE,
        help="CSV in the Binance public-data trades layout",
        read_by={"producer"},
    )
    replay_speed: float = setting(1.0, help="1 = real time, 0 = as fast as possible", read_by={"producer"})
    weight_budget_per_minute: int = setting(
        3000,  # half of Binance's 6,000 weight/min IP limit
        help="request weight per minute, of Binance's 6,000 limit (producer and reconciliation together)",
        read_by={"producer", "reconcile"},
    )
    # The shortest interval one symbol keeps within 80 % of the default budget (make bench: with the
    # 500 ms trigger it takes trade -> aggregate p50 from 2.0 s to 1.4 s).
    poll_interval_s: float = setting(
        0.625, help="seconds between polls of a symbol (stretched to fit the budget)", read_by={"producer"}
    )
    http_timeout_s: float = setting(
        10.0, help="HTTP timeout per request, seconds", read_by={"producer", "reconcile"}
    )
    event_time_lead: Duration | None = setting(
        None,
        help="how far one symbol may run ahead of the others in event time; at most, and when unset, "
        "half of TELEMETRY_WATERMARK_DELAY",
        read_by={"producer"},
    )


@dataclass(frozen=True)
class StreamingSettings(_Group):
    """The Spark streaming job."""

    checkpoint_dir: str = setting(
        "/var/lib/telemetry/checkpoints",
        help="Spark checkpoints, a path or a URI (file://, hdfs://, s3a://...); keep it persistent",
        read_by={"processing"},
    )
    spark_master: str = setting(
        "local[*]",
        help="Spark master URL: `local[*]` runs the job in its own process, `spark://host:7077` on a "
        "standalone cluster",
        read_by={"processing"},
    )
    spark_driver_host: str = setting(
        "127.0.0.1",
        help="address the executors reach the driver at (loopback unless they run on other hosts)",
        read_by={"processing"},
    )
    spark_driver_bind_address: str = setting(
        "127.0.0.1", help="address the driver listens on", read_by={"processing"}
    )
    watermark_delay: Duration = setting(
        _WATERMARK,
        help="how late a trade may arrive and still count (a Spark interval)",
        # The producer's event-time lead defaults to half of it.
        read_by={"processing", "producer"},
    )
    trigger_interval: Duration = setting(
        _TRIGGER_INTERVAL, help="micro-batch interval (a Spark interval)", read_by={"processing"}
    )
    # One: each shuffle partition is a task with its own state store and per-batch fixed cost, and
    # a 2-core appliance has a handful of symbols (measured in session.py).
    shuffle_partitions: int = setting(
        1,
        help="Spark shuffle partitions: the stateful step's tasks, each with its own state store",
        read_by={"processing"},
    )
    # Not larger (README, Performance, 2026-12-06): 250,000 sped the job's replay up by 5-28 % but
    # Spark's bare read of the topic, whose time is mostly the per-batch cost, by 37 %, and the job
    # fell below half of that read's rate, a target of the bench.
    max_offsets_per_trigger: int = setting(
        100_000,
        help="records per micro-batch at most, 0 = no cap (the stateful step holds a batch in memory)",
        read_by={"processing"},
    )
    # make bench's 1,000,000-trade replay (100,000-record batches): the job's peak RSS 1.60 GiB with a
    # 1g heap, over its 1.5 GiB cap; 1.20 GiB with 768m, at the same ratio to the peer-style job.
    spark_driver_memory: str = setting("768m", help="Spark driver heap", read_by={"processing"})
    spark_jars_dir: Path = setting(
        _JARS_DIR,
        help="the Spark Kafka connector jars (`make jars`)",
        read_by={"processing"},
    )
    starting_offsets: str = setting(
        "earliest", help="where a new checkpoint starts reading the raw topic", read_by={"processing"}
    )


@dataclass(frozen=True)
class DashboardSettings(_Group):
    """The Streamlit dashboard, and the log level of every process."""

    dashboard_history_hours: float = setting(24.0, help="history the dashboard keeps", read_by={"dashboard"})
    dashboard_refresh_s: float = setting(2.0, help="dashboard refresh period, seconds", read_by={"dashboard"})
    log_level: str = setting("INFO", help="log level of every process", read_by=set(SERVICES))


@dataclass(frozen=True)
class Settings(DashboardSettings, StreamingSettings, ProducerSettings, KafkaSettings):
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, kind in _field_types(cls).items():
            raw = environ.get(env_name(name))
            if raw is not None and raw != "":
                values[name] = _convert(name, kind, raw)
        return _built(cls, **values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, service: str | None = None) -> None:
        """One --flag per setting `service` reads (every setting without a service)."""
        defaults = cls()
        for field in dataclasses.fields(cls):
            if service is None or service in field.metadata["read_by"]:
                parser.add_argument(
                    "--" + field.name.replace("_", "-"),
                    dest=field.name,
                    default=None,
                    metavar=env_name(field.name),
                    help=f"{field.metadata['help']} (default: {_shown(getattr(defaults, field.name))})",
                )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        base = cls.from_env(environ)
        overrides = {
            name: _convert(name, kind, getattr(args, name))
            for name, kind in _field_types(cls).items()
            if getattr(args, name, None) is not None
        }
        return _built(dataclasses.replace, base, **overrides)


def _built(make: Callable[..., Settings], *args: Any, **values: Any) -> Settings:
    """Settings from `make`, a refused combination of values ending the process with its reason."""
    try:
        return make(*args, **values)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def command_line(service: str, description: str | None) -> argparse.ArgumentParser:
    """The command line of `service`: one --flag per setting it reads, help from the metadata."""
    parser = argparse.ArgumentParser(
        prog=f"python -m app.{service}",
        description=description,
        epilog=f"Each flag may also be set as the environment variable shown ({ENV_PREFIX}<NAME>).",
    )
    Settings.add_arguments(parser, service)
    return parser


def parse_command_line(service: str, argv: list[str] | None, description: str | None) -> Settings:
    """The settings of `service`: its --flags over the environment."""
    return Settings.from_args(command_line(service, description).parse_args(argv))


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _field_types(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _convert(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind in (Path, Path | None):
            return Path(raw)
        if kind in (Duration, Duration | None):
            return Duration.parse(raw)
        if kind == tuple[str, ...]:
            items = tuple(item.strip().upper() for item in raw.split(",") if item.strip())
            if not items:
                raise ValueError("empty list")
            return items
        return raw
    except ValueError as exc:
        raise SystemExit(f"invalid {env_name(name)}={raw!r}: {exc}") from None


# --- What the metadata drives ---------------------------------------------------------------------
def read_by(service: str) -> list[str]:
    """The settings `service` reads, in declaration order."""
    return [f.name for f in dataclasses.fields(Settings) if service in f.metadata["read_by"]]


def service_settings_yaml() -> str:
    """ansible/roles/pipeline/vars/settings.yml: which service reads which setting."""
    lines = [
        "---",
        "# Which service reads which setting, generated from app/common/settings.py:",
        "#   .venv/bin/python -m app.common.settings ansible-vars \\",
        "#     > ansible/roles/pipeline/vars/settings.yml",
        "# (tests/ansible/test_settings_stamps.py checks it is current). A changed",
        "# setting restarts only the services listed for it.",
        "pipeline_service_settings:",
    ]
    for service in SERVICES:
        lines.append(f"  {service}:")
        lines.extend(f"    - {name}" for name in read_by(service))
    return "\n".join(lines) + "\n"


def configuration_table() -> str:
    """The README's configuration table."""
    defaults = Settings()
    rows = ["| Variable | Default | Read by | Meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(Settings):
        services = ", ".join(s for s in SERVICES if s in field.metadata["read_by"])
        meaning = field.metadata["help"].replace("|", "\\|")
        shown = _shown(getattr(defaults, field.name)).replace("|", "\\|")
        rows.append(f"| `{env_name(field.name)}` | `{shown}` | {services} | {meaning} |")
    return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, Path) and value.is_relative_to(REPO_ROOT):
        return str(value.relative_to(REPO_ROOT))
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.common.settings", description="Print what the settings' metadata generates."
    )
    parser.add_argument("what", choices=["readme-table", "ansible-vars"])
    what = parser.parse_args(argv).what
    sys.stdout.write(configuration_table() if what == "readme-table" else service_settings_yaml())
    return 0


__all__ = [
    "ENV_PREFIX",
    "KAFKA_SECURITY_PROTOCOLS",
    "SERVICES",
    "DashboardSettings",
    "Duration",
    "KafkaSettings",
    "ProducerSettings",
    "Settings",
    "StreamingSettings",
    "command_line",
    "configuration_table",
    "env_name",
    "event_time_lead_ms",
    "kafka_security_problem",
    "parse_command_line",
    "read_by",
    "service_settings_yaml",
    "setting",
]

if __name__ == "__main__":
    sys.exit(main())
