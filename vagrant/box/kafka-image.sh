#!/usr/bin/env bash
# A root filesystem for a local Apache Kafka image, laid out like the official apache/kafka image
# (/opt/kafka/bin/*.sh, /opt/kafka/libs), for guests that cannot reach a container registry. It is
# made from Apache Kafka's own jars from Maven Central (the same ones the tests' LocalBroker runs,
# `make jars`), a Debian Java runtime, and the launchers of Molecule's Kafka image
# (tests/ansible/images/kafka). build.sh imports it into the test box's Docker store.
#
#   kafka-image.sh KAFKA_JARS_DIR MIRROR OUT_TAR [DEB_CACHE_DIR]
set -euo pipefail

jars=${1:?usage: kafka-image.sh KAFKA_JARS_DIR MIRROR OUT_TAR}
mirror=${2:?missing MIRROR}
out=${3:?missing OUT_TAR}
debs=${4:-}
shared=$(cd "$(dirname "$0")/../../tests/ansible/images/kafka" && pwd)
work=$(mktemp -d "$(dirname "$out")/kafka-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

compgen -G "$jars/kafka_2.13-*.jar" >/dev/null || {
    echo "no Kafka jars in $jars (run make jars)" >&2
    exit 1
}

debootstrap --variant=minbase ${debs:+--cache-dir="$debs"} --include=openjdk-17-jre-headless bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log"
    exit 1
}
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

install -d "$rootfs/opt/kafka/libs" "$rootfs/opt/kafka/bin" "$rootfs/opt/kafka/config"
cp "$jars"/*.jar "$rootfs/opt/kafka/libs/"

# The launchers and logging set-up of the image Molecule builds, so the two test images cannot drift.
cp "$shared"/bin/*.sh "$rootfs/opt/kafka/bin/"
cp "$shared/log4j2.yaml" "$rootfs/opt/kafka/config/log4j2.yaml"
chmod 0755 "$rootfs"/opt/kafka/bin/*.sh

tar -C "$rootfs" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
