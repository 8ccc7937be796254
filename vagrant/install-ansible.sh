#!/usr/bin/env bash
# Installs Ansible inside the guest for the ansible_local provisioner, so the host needs nothing but
# Vagrant and a provider. Pins the version the project tests with (requirements-dev.txt) and installs
# into its own venv: Ubuntu 24.04 and Debian 12 refuse a system-wide `pip install` (PEP 668), and
# the distribution packages are older than what the roles are linted and tested with.
#
#   install-ansible.sh [REQUIREMENTS_FILE]    (default /vagrant/requirements-dev.txt)
set -euo pipefail

requirements=${1:-/vagrant/requirements-dev.txt}
venv=/opt/ansible
pin=$(grep -E '^ansible==' "$requirements" | head -1)
version=${pin#ansible==}
[[ -n "$version" ]] || {
    echo "no ansible==VERSION pin in $requirements" >&2
    exit 1
}

# awk reads all of pip's output: `grep -q` would stop early and pipefail would report pip's SIGPIPE.
installed=$("$venv/bin/python" -m pip show ansible 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [[ -x "$venv/bin/ansible-playbook" && "$installed" == "$version" ]]; then
    echo "ansible $version already installed in $venv"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "ansible==$version"
for tool in ansible ansible-playbook ansible-galaxy ansible-config; do
    ln -sf "$venv/bin/$tool" "/usr/local/bin/$tool"
done
echo "installed ansible $version in $venv"
