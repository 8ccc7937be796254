#!/usr/bin/env bash
# The Kafka data disk for the libvirt provider, fully allocated up front like VirtualBox's
# `createmedium --variant Fixed`: vagrant-libvirt itself creates extra disks sparse (1 GiB allocated),
# and a sparse file grows under Kafka's writes, which is the hypervisor jitter the seed avoids.
# The Vagrantfile runs it from triggers on the host; it is idempotent.
#
#   libvirt-data-disk.sh create URI POOL VOLUME SIZE_GB
#   libvirt-data-disk.sh delete URI POOL VOLUME
set -euo pipefail

action=${1:?usage: libvirt-data-disk.sh create|delete URI POOL VOLUME [SIZE_GB]}
uri=${2:?missing URI}
pool=${3:?missing POOL}
volume=${4:?missing VOLUME}
virsh=(virsh --quiet -c "$uri")

exists() { "${virsh[@]}" vol-info --pool "$pool" "$volume" >/dev/null 2>&1; }

case "$action" in
create)
    size_gb=${5:?missing SIZE_GB}
    if ! "${virsh[@]}" pool-info "$pool" >/dev/null 2>&1; then
        # Same pool vagrant-libvirt would make for its own images, made first because this runs
        # before vagrant-libvirt gets to it.
        "${virsh[@]}" pool-define-as "$pool" dir --target /var/lib/libvirt/images >/dev/null
        "${virsh[@]}" pool-build "$pool" >/dev/null 2>&1 || true
    fi
    if [[ "$("${virsh[@]}" pool-info "$pool" | awk '/^State:/ {print $2}')" != running ]]; then
        "${virsh[@]}" pool-start "$pool" >/dev/null
    fi
    "${virsh[@]}" pool-autostart "$pool" >/dev/null 2>&1 || true
    if exists; then
        echo "data disk $volume already in pool $pool: kept"
        exit 0
    fi
    "${virsh[@]}" vol-create-as "$pool" "$volume" "${size_gb}G" --allocation "${size_gb}G" --format raw \
        >/dev/null
    echo "data disk $volume created in pool $pool: ${size_gb} GiB, fully allocated"
    ;;
delete)
    if exists; then
        "${virsh[@]}" vol-delete --pool "$pool" "$volume" >/dev/null
        echo "data disk $volume deleted from pool $pool"
    fi
    ;;
*)
    echo "unknown action $action" >&2
    exit 2
    ;;
esac
