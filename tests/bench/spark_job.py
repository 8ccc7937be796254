"""`python -m tests.bench.spark_job [--state-store hdfs|rocksdb] [--flags]`: the streaming job
exactly as `python -m app.processing` runs it, with a choice of state store provider (which is not a
setting of the appliance, so a replay variant needs this wrapper)."""

from __future__ import annotations

import argparse
import functools
import sys

import app.processing.__main__ as processing_main
from app.processing.session import HDFS_STATE_STORE, ROCKSDB_STATE_STORE, build_session

PROVIDERS = {"hdfs": HDFS_STATE_STORE, "rocksdb": ROCKSDB_STATE_STORE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--state-store", choices=sorted(PROVIDERS), default="hdfs")
    known, rest = parser.parse_known_args(argv)
    # app.processing's main() builds its session through this name: give it the chosen provider.
    provider = functools.partial(build_session, state_store=PROVIDERS[known.state_store])
    setattr(processing_main, "build_session", provider)  # noqa: B010 - not re-exported, mypy agrees
    return processing_main.main(rest)


if __name__ == "__main__":
    sys.exit(main())
