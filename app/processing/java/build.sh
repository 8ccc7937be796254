#!/usr/bin/env bash
# Builds the job's JVM code (telemetry/*.java: the stateful processor and the producer-form reader)
# into a jar, compiled against the Spark that runs it: the jars of the pyspark installed beside the job.
# Usage: build.sh PYTHON OUTPUT_JAR   (PYTHON: the interpreter whose pyspark the job uses)
# -Xlint without "path": pyspark's jars name, in their manifests, jars it does not ship.
# The jar's entries carry a fixed date, so the same sources give the same bytes.
set -euo pipefail
python=$1
output=$2
here=$(cd "$(dirname "$0")" && pwd)
pyspark=$("$python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("pyspark").origin).parent)')
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
javac --release 17 -encoding UTF-8 -Xlint:all,-path -Werror -cp "$pyspark/jars/*" -d "$classes" "$here"/telemetry/*.java
mkdir -p "$(dirname "$output")"
jar --create --date=1980-01-01T00:00:02Z --file "$output.tmp" -C "$classes" .
mv "$output.tmp" "$output"
