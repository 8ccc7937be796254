#!/usr/bin/env bash
# Debian packages for checking the Vagrantfile on this host.
#   host-deps.sh config   Vagrant and vagrant-libvirt: enough to evaluate and validate the Vagrantfile
#   host-deps.sh full     also libvirt, QEMU, debootstrap and Docker, to build and `vagrant up` the test box
set -euo pipefail

level=${1:-config}
need=()
command -v vagrant >/dev/null || need+=(vagrant)
[[ -d /usr/share/rubygems-integration/all/gems ]] &&
    compgen -G "/usr/share/rubygems-integration/all/gems/vagrant-libvirt-*" >/dev/null ||
    need+=(vagrant-libvirt)
if [[ "$level" == full ]]; then
    command -v libvirtd >/dev/null || need+=(libvirt-daemon-system)
    command -v virsh >/dev/null || need+=(libvirt-clients)
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v qemu-img >/dev/null || need+=(qemu-utils)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    # The box build imports the Kafka image into the guest's Docker store with a dockerd of its own.
    command -v dockerd >/dev/null || need+=(docker.io)
    command -v dnsmasq >/dev/null || [[ -x /usr/sbin/dnsmasq ]] || need+=(dnsmasq-base)
    command -v iptables >/dev/null || need+=(iptables)
    command -v rsync >/dev/null || need+=(rsync)
    command -v curl >/dev/null || need+=(curl)
fi
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # Other jobs on a shared machine may hold the dpkg lock for a while.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
