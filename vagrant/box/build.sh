#!/usr/bin/env bash
# Builds the small Debian bookworm box that tests the Vagrantfile through vagrant-libvirt on a host
# without VirtualBox or KVM. Users never need it: they get the Ubuntu 24.04 box from the Vagrantfile.
#
#   vagrant/box/build.sh OUT_DIR
#
# Writes OUT_DIR/telemetry-bookworm.box (qcow2 + metadata.json + a box Vagrantfile that boots the
# box's own kernel directly, since the image has no partition table or boot loader). Rebuilds only
# when the recipe changed: the box is keyed by this folder, the pins, the Kafka jars and the Java
# package the pipeline role installs.
#
# What a TCG guest would spend many minutes on is done here at host speed, the way an air-gapped
# site prepares a base image: Docker, Java and Ansible are installed, the Kafka image is already in
# Docker's store, the pipeline's virtualenv holds the pinned requirements, and pip installs from a
# wheelhouse of them. The playbook still runs every task against it, and finds them done. (Molecule
# tests the roles installing all of it from scratch.)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: build.sh OUT_DIR}
root_size=${TELEMETRY_BOX_ROOT_SIZE:-12G}

mkdir -p "$out"
out=$(cd "$out" && pwd)
kafka_jars="$repo/.cache/jars/kafka"
key=$({
    # install-ansible.sh is left out: what it bakes in is decided by the pin in requirements-dev.txt.
    cat "$here"/build.sh "$here"/kafka-image.sh "$here"/Vagrantfile.box "$repo/requirements-dev.txt" \
        "$repo/requirements.txt" "$repo/pyproject.toml" "$repo"/ansible/roles/pipeline/{defaults,vars}/main.yml \
        "$repo"/tests/ansible/images/kafka/bin/* "$repo/tests/ansible/images/kafka/log4j2.yaml"
    ls "$kafka_jars"
} | sha256sum | cut -c1-16)
box="$out/telemetry-bookworm.box"
if [[ -f "$box" && "$(cat "$out/box.key" 2>/dev/null)" == "$key" ]]; then
    echo "box up to date: $box"
    exit 0
fi

# The guest reaches the same Debian mirror as this host (no other registry is reachable), so the
# mirror is read from the host's apt configuration rather than written down here.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
    true)
if [[ -z "$mirror" ]]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
fi

work="$out/build"
rootfs="$work/rootfs"
dockerd_pid=""
# Releases what the build holds: the chroot's bind mounts, and the dockerd below with the network
# namespace it mounts under its exec root. Also run before the build, after an interrupted one.
cleanup() {
    if [[ -n "$dockerd_pid" ]]; then
        kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
        dockerd_pid=""
    fi
    { grep -o " $work/[^ ]*" /proc/mounts || true; } | sort -r | xargs -r -n1 umount -l
    return 0
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"

# Downloaded packages are kept for the next rebuild (debootstrap fetches ~150 MB otherwise).
debs="$out/debs"
mkdir -p "$debs"
echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --cache-dir="$debs" \
    --include=systemd,systemd-sysv,systemd-resolved,dbus,udev,kmod,iproute2,openssh-server,sudo,python3,python3-apt,python3-venv,ca-certificates,curl,gnupg,rsync,e2fsprogs,procps,less,linux-image-amd64 \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    {
        tail -20 "$work/debootstrap.log"
        exit 1
    }

# Same package sources and pip settings as the host: the guest has no other way out.
rm -f "$rootfs"/etc/apt/sources.list
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && cp "$f" "$rootfs$f"
done
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
fi

# pip in the guest installs the pinned requirements from this wheelhouse only: pyspark is published
# as a source archive whose wheel takes many minutes to build under emulation, and the rest would be
# downloaded through the guest's emulated network. Host and guest are both Debian bookworm, Python 3.11.
wheels=/var/cache/telemetry-box/wheels
"$repo/.venv/bin/python" -m pip wheel --quiet --disable-pip-version-check -r "$repo/requirements.txt" \
    -w "$rootfs$wheels"
# The pipeline role builds the app's wheel in the guest (the control node of ansible_local) with the
# build backend pinned in pyproject.toml, which pip then also finds here.
build_requires=$("$repo/.venv/bin/python" -c \
    'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"])' \
    "$repo/pyproject.toml")
# shellcheck disable=SC2086 # one argument per requirement
"$repo/.venv/bin/python" -m pip wheel --quiet --disable-pip-version-check $build_requires -w "$rootfs$wheels"
echo "wheelhouse: $(ls "$rootfs$wheels" | wc -l) wheels, $(du -sh "$rootfs$wheels" | cut -f1)"

echo telemetry-box >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 telemetry-box\n' >"$rootfs/etc/hosts"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
cat >"$rootfs/etc/systemd/network/10-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF

# Vagrant's well-known insecure key; vagrant swaps it for a generated one on the first `vagrant up`.
insecure_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null |
    head -1)
mount --bind /proc "$rootfs/proc"
mount --bind /sys "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
mount --bind /dev/pts "$rootfs/dev/pts"
rm -f "$rootfs/etc/resolv.conf"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
java_package=$(awk '/^pipeline_java_package:/ {print $2}' "$repo/ansible/roles/pipeline/defaults/main.yml")
# Where the pipeline role keeps its virtualenv (pipeline_venv is pipeline_home/venv).
pipeline_venv=$(awk '/^pipeline_home:/ {print $2 "/venv"}' "$repo/ansible/roles/pipeline/defaults/main.yml")
install -m 0755 "$repo/vagrant/install-ansible.sh" "$rootfs/tmp/install-ansible.sh"
cp "$repo/requirements-dev.txt" "$repo/requirements.txt" "$rootfs/tmp/"
# A clean environment: the host's own variables (pip find-links, proxies of this machine) are not the guest's.
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /bin/bash -euo pipefail -c '
    systemctl enable systemd-networkd systemd-resolved ssh >/dev/null 2>&1
    update-ca-certificates >/dev/null
    useradd -m -s /bin/bash -G sudo vagrant
    echo "vagrant:vagrant" | chpasswd
    echo "root:vagrant" | chpasswd
    echo "vagrant ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/vagrant
    chmod 0440 /etc/sudoers.d/vagrant
    install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
    echo "UseDNS no" >/etc/ssh/sshd_config.d/vagrant.conf
    # The docker and pipeline roles find these installed and configure them as on any host
    # (docker-compose is the compose package the docker role picks on Debian); the fresh package lists
    # spare the roles an `apt-get update` while the box is under an hour old, as in CI.
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io docker-compose "$1" python3-pip >/dev/null
    # Ansible is baked in so the slow part of the install (thousands of small files) runs at host
    # speed; the same script runs on the Ubuntu box at `vagrant up` and finds nothing to do here.
    /tmp/install-ansible.sh /tmp/requirements-dev.txt
    # What the pipeline role would spend a quarter of an hour unpacking and compiling under emulation
    # (pyspark alone is 300 MB); the pip task of the role then finds every pin satisfied.
    python3 -m venv "$3"
    "$3/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$2" \
        -r /tmp/requirements.txt
    apt-get clean
    rm -f /tmp/install-ansible.sh /tmp/requirements-dev.txt /tmp/requirements.txt
' bash "$java_package" "$wheels" "$pipeline_venv"
install -m 0600 -o 1000 -g 1000 "$insecure_key" "$rootfs/home/vagrant/.ssh/authorized_keys"
ln -sf /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
rm -f "$rootfs"/etc/ssh/ssh_host_*
# Host keys are generated at first boot, so two guests from one box do not share them.
cat >"$rootfs/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/ssh-hostkeys.service \
    "$rootfs/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
: >"$rootfs/etc/machine-id"
cleanup

# The guest cannot reach a container registry: the Kafka image is built here and imported into the
# guest's Docker store by a dockerd of this host (the same Debian docker.io), as a pull would leave it.
kafka_version=$(basename "$(ls "$kafka_jars"/kafka_2.13-*.jar | head -1)" .jar)
kafka_image="telemetry-box/kafka:${kafka_version#kafka_2.13-}"
bash "$here/kafka-image.sh" "$kafka_jars" "$mirror" "$work/kafka-rootfs.tar" "$debs"
dockerd_run="$work/dockerd"
mkdir -p "$dockerd_run"
dockerd --data-root "$rootfs/var/lib/docker" --exec-root "$dockerd_run/exec" --pidfile "$dockerd_run/pid" \
    -H "unix://$dockerd_run/sock" --bridge none --iptables=false --ip-masq=false \
    >"$dockerd_run/log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$dockerd_run/sock"
for _ in $(seq 60); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
done
docker import "$work/kafka-rootfs.tar" "$kafka_image" >/dev/null
docker image inspect "$kafka_image" --format "imported {{.RepoTags}} ({{.Size}} bytes)"
cleanup
unset DOCKER_HOST
rm -f "$work/kafka-rootfs.tar"

# The guest's pip reads the wheelhouse and nothing else.
{
    echo "[global]"
    [[ -f /etc/pip.conf ]] && awk '/^cert *=/' /etc/pip.conf
    echo "find-links = $wheels"
    echo "no-index = true"
} >"$rootfs/etc/pip.conf"

cp "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)" "$work/vmlinuz"
cp "$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -1)" "$work/initrd.img"

# An ext4 image straight from the folder: no loop device, no partition table.
truncate -s "$root_size" "$work/root.raw"
mke2fs -q -t ext4 -L root -d "$rootfs" "$work/root.raw"
qemu-img convert -O qcow2 "$work/root.raw" "$work/box.img"
rm -f "$work/root.raw"
virtual_size=$(("$(numfmt --from=iec "$root_size")" / 1024 / 1024 / 1024))
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$virtual_size" \
    >"$work/metadata.json"
cp "$here/Vagrantfile.box" "$work/Vagrantfile"
# Uncompressed: the qcow2 is already compact and gzip would cost a minute of CPU on every rebuild.
tar -C "$work" -cf "$box.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$box.tmp" "$box"
# The image the box holds, for the test's playbook variables.
echo "$kafka_image" >"$out/kafka-image"
echo "$key" >"$out/box.key"
rm -rf "$work"
echo "built $box ($(du -h "$box" | cut -f1))"
