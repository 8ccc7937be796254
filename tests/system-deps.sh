#!/usr/bin/env bash
# Debian packages the test suite needs beyond the machine's toolchains.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
# The browser test reads the chart's time-axis labels back from a screenshot.
command -v tesseract >/dev/null || need+=(tesseract-ocr)
# javac: `make jars` compiles the job's stateful processor (app/processing/java).
command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
# tests/ansible/test_unit_hardening.py scores the rendered units offline.
command -v systemd-analyze >/dev/null || need+=(systemd)
# tests/vagrant evaluates the Vagrantfile with Vagrant itself.
command -v vagrant >/dev/null || need+=(vagrant)
dpkg -s vagrant-libvirt >/dev/null 2>&1 || need+=(vagrant-libvirt)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
