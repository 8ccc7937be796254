"""The Vagrantfile as Vagrant itself reads it: the seed's VM settings for VirtualBox, the same shape for
libvirt, the environment overrides, and `vagrant validate`.

Nothing is booted (VirtualBox cannot run here; `tests/vagrant/run.sh` boots the libvirt VM). Vagrant
and vagrant-libvirt are installed from Debian's packages by the first test that needs them.

Debian's Vagrant is 2.3.4 and no registry reachable here has 2.4.2, the Vagrantfile's minimum (for
VirtualBox 7.1), so every evaluation lowers the requirement with TELEMETRY_VM_VAGRANT_REQUIREMENT
and one test shows that without it this Vagrant is refused. Where the data disk goes depends on the
imported VM's storage controllers: VBoxManage cannot run here, so those tests feed recorded
`showvminfo --machinereadable` outputs of a SATA box and a VirtIO box (showvminfo/) to the
Vagrantfile's own data-disk step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHOWVMINFO = HERE / "showvminfo"
# What Debian's Vagrant 2.3.4 needs to evaluate the Vagrantfile at all.
OLD_VAGRANT = {"vagrant_requirement": ">= 2.3.4"}
VBOX_DATA_DISK = "/dev/disk/by-id/ata-VBOX_HARDDISK_kafka-data"
# What the Vagrantfile reads; copied so Vagrant's local state (.vagrant/) never lands in the checkout.
PROJECT_FILES = ["Vagrantfile", "vagrant", "requirements-dev.txt"]


@pytest.fixture(scope="session")
def vagrant_ready() -> None:
    subprocess.run(["bash", str(HERE / "host-deps.sh"), "config"], check=True, timeout=900)


@pytest.fixture
def project(tmp_path: Path, vagrant_ready: None) -> Path:
    """A copy of the project's Vagrant files in a folder named like the checkout."""
    dest = tmp_path / "appliance"
    dest.mkdir()
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    return dest


def vagrant_env(tmp: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_VM_", "VAGRANT_"))}
    env.update(VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_HOME=str(tmp / "vagrant-home"))
    env.update({f"TELEMETRY_VM_{k.upper()}": v for k, v in {**OLD_VAGRANT, **overrides}.items()})
    return env


def evaluate(
    project: Path, provider: str, showvminfo: Path | None = None, **overrides: str
) -> dict[str, Any]:
    recorded = [str(showvminfo)] if showvminfo else []
    proc = subprocess.run(
        ["ruby", str(HERE / "vagrant_config.rb"), str(project), provider, *recorded],
        env=vagrant_env(project.parent, **overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["config_errors"] == []
    return result


def customizations(config: dict[str, Any], subcommand: str) -> list[list[str]]:
    return [c["command"] for c in config["provider"]["customizations"] if c["command"][0] == subcommand]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def modifyvm_options(config: dict[str, Any]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for command in customizations(config, "modifyvm"):
        assert command[1] == "id", "modifyvm must target this machine"
        args = command[2:]
        opts.update(zip(args[::2], args[1::2], strict=True))
    return opts


def test_virtualbox_has_every_seed_setting(project: Path) -> None:
    config = evaluate(project, "virtualbox")

    assert config["box"] == "bento/ubuntu-24.04"
    assert config["box_version"] == "202510.26.0"
    vm = modifyvm_options(config)
    assert vm["--memory"] == "8192"
    assert vm["--cpus"] == "4"
    assert vm["--graphicscontroller"] == "vmsvga"
    assert vm["--vram"] == "128"
    assert vm["--accelerate3d"] == "off"

    [create] = customizations(config, "createmedium")
    assert option(create, "--variant") == "Fixed"
    assert option(create, "--size") == str(50 * 1024)  # MiB
    # Attached later, where the imported VM has room (test_data_disk_goes_where_the_box_has_room).
    assert customizations(config, "storageattach") == []
    events = [c["event"] for c in config["provider"]["customizations"]]
    assert set(events) == {"pre-boot"}


@pytest.mark.parametrize(
    ("box", "controller", "port", "commands"),
    [
        # Older bento builds: the system disk on the AHCI controller's only port; one more is added.
        (
            "sata-box.txt",
            "SATA Controller",
            "1",
            [["storagectl", "--name", "SATA Controller", "--portcount", "2"]],
        ),
        # Current bento builds: VirtIO (VirtioSCSI) and IDE only; the disk gets an AHCI controller.
        (
            "virtio-box.txt",
            "Kafka Data",
            "0",
            [
                [
                    *("storagectl", "--name", "Kafka Data", "--add", "sata"),
                    *("--controller", "IntelAhci", "--portcount", "1", "--bootable", "off"),
                ]
            ],
        ),
    ],
)
def test_data_disk_goes_where_the_box_has_room(
    project: Path, box: str, controller: str, port: str, commands: list[list[str]]
) -> None:
    config = evaluate(project, "virtualbox", SHOWVMINFO / box)
    disk = config["data_disk"]
    assert disk["hooked"] and disk["runs_right_before_boot"] and disk["runs_after_pre_boot_customizations"]
    [create] = customizations(config, "createmedium")
    vm_id = "5b0e3b8e-vm-id"
    expected = [[c[0], vm_id, *c[1:]] for c in commands] + [
        ["setextradata", vm_id, f"VBoxInternal/Devices/ahci/0/Config/Port{port}/SerialNumber", "kafka-data"],
        [
            *("storageattach", vm_id, "--storagectl", controller, "--port", port, "--device", "0"),
            *("--type", "hdd", "--medium", option(create, "--filename")),
        ],
    ]
    assert disk["commands"] == expected
    # The serial set above is how the guest finds it, whatever the port.
    assert config["provisioners"][1]["extra_vars"]["os_tuning_data_disk_device"] == VBOX_DATA_DISK


def test_data_disk_already_attached_is_left_as_it_is(project: Path) -> None:
    first = evaluate(project, "virtualbox", SHOWVMINFO / "sata-box.txt")
    [create] = customizations(first, "createmedium")
    medium = option(create, "--filename")
    # What showvminfo says of the halted VM once the first `vagrant up` attached the disk.
    halted = project.parent / "halted.txt"
    halted.write_text(
        (SHOWVMINFO / "sata-box.txt")
        .read_text()
        .replace('storagecontrollerportcount0="1"', 'storagecontrollerportcount0="2"')
        + f'"SATA Controller-1-0"="{medium}"\n'
        + '"SATA Controller-ImageUUID-1-0"="3c5e7a91-0d2b-4f6e-8a13-9b7c5d1e2f40"\n'
    )
    assert evaluate(project, "virtualbox", halted)["data_disk"]["commands"] == []


def test_dashboard_port_is_forwarded_to_host_loopback_only(project: Path) -> None:
    config = evaluate(project, "virtualbox")
    [dashboard] = [p for p in config["forwarded_ports"] if p["guest"] == 8501]
    assert dashboard["host"] == 8501
    assert dashboard["host_ip"] == "127.0.0.1"
    assert dashboard["auto_correct"] is False


def test_provisioning_runs_the_bare_host_playbook_with_the_data_disk(project: Path) -> None:
    for provider, device in [
        ("virtualbox", VBOX_DATA_DISK),
        ("libvirt", "/dev/disk/by-id/virtio-kafka-data"),
    ]:
        config = evaluate(project, provider)
        names = [p["name"] for p in config["provisioners"]]
        assert names == ["ansible-install", "site"], provider
        install, site = config["provisioners"]
        assert install["type"] == "shell"
        assert install["path"] == "vagrant/install-ansible.sh"
        assert site["type"] == "ansible_local"
        assert site["playbook"] == "ansible/site.yml"
        assert site["provisioning_path"] == "/vagrant"
        assert site["inventory_path"] == "inventory/localhost.yml"
        assert site["install"] is False
        assert site["extra_vars"]["os_tuning_data_disk_device"] == device
        assert site["extra_vars"]["pipeline_source"] == "binance"
        assert site["extra_vars"]["pipeline_dashboard_address"] == "0.0.0.0"


def test_data_disk_is_not_created_again_once_it_exists(project: Path) -> None:
    first = evaluate(project, "virtualbox")
    [create] = customizations(first, "createmedium")
    disk = Path(option(create, "--filename"))
    assert disk.parent == project / ".vagrant"

    disk.parent.mkdir(exist_ok=True)
    disk.write_bytes(b"")  # what VBoxManage left after the first `vagrant up`
    again = evaluate(project, "virtualbox", SHOWVMINFO / "sata-box.txt")

    assert customizations(again, "createmedium") == []
    assert again["data_disk"]["commands"][-1][-1] == str(disk)


def test_libvirt_has_the_same_shape(project: Path) -> None:
    config = evaluate(project, "libvirt")
    lv = config["provider"]
    assert lv["memory"] == 8192
    assert lv["cpus"] == 4
    assert lv["driver"] == "kvm"
    [disk] = lv["disks"]
    assert disk["size"] == "50G"
    assert disk["type"] == "raw"
    # Pre-created fully allocated by the trigger; vagrant-libvirt would make a sparse one otherwise.
    assert disk["allow_existing"] is True
    # ...and stays so: the guest's discards would punch holes in it.
    assert disk["discard"] == "ignore"
    assert ["kafka data disk", "up"] in config["triggers"]["before"]
    assert ["kafka data disk", "destroy"] in config["triggers"]["after"]
    assert config["forwarded_ports"][0]["host_ip"] == "127.0.0.1"
    assert config["synced_folders"]["/vagrant"]["type"] == "rsync"


def test_sizes_are_overridable_and_defaults_stay_the_seeds(project: Path) -> None:
    small = evaluate(
        project,
        "virtualbox",
        memory_mb="2048",
        cpus="2",
        data_disk_gb="2",
        dashboard_host_port="18501",
        producer_source="replay",
    )
    vm = modifyvm_options(small)
    assert (vm["--memory"], vm["--cpus"]) == ("2048", "2")
    # The graphics settings are the seed's whatever the size.
    assert (vm["--graphicscontroller"], vm["--vram"], vm["--accelerate3d"]) == ("vmsvga", "128", "off")
    [create] = customizations(small, "createmedium")
    assert option(create, "--size") == "2048"
    [dashboard] = [p for p in small["forwarded_ports"] if p["guest"] == 8501]
    assert (dashboard["host"], dashboard["host_ip"]) == (18501, "127.0.0.1")
    assert small["provisioners"][1]["extra_vars"]["pipeline_source"] == "replay"

    lv = evaluate(project, "libvirt", memory_mb="3072", cpus="2", data_disk_gb="3", libvirt_driver="qemu")
    assert (lv["provider"]["memory"], lv["provider"]["cpus"], lv["provider"]["driver"]) == (3072, 2, "qemu")
    assert lv["provider"]["disks"][0]["size"] == "3G"


def test_box_version_is_pinned_and_overridable(project: Path) -> None:
    assert evaluate(project, "libvirt")["box_version"] == "202510.26.0"
    assert evaluate(project, "libvirt", box_version="0")["box_version"] == "0"


def test_vagrant_older_than_2_4_2_is_refused_unless_the_requirement_is_lowered(project: Path) -> None:
    def validate(**overrides: str) -> subprocess.CompletedProcess[str]:
        env = vagrant_env(project.parent, **overrides)
        return subprocess.run(
            ["vagrant", "validate", "--ignore-provider"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = validate(vagrant_requirement="")  # empty: the Vagrantfile's own ">= 2.4.2"
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert ">= 2.4.2" in output
    assert "You are running Vagrant 2.3.4" in output
    lowered = validate()
    assert lowered.returncode == 0, lowered.stdout + lowered.stderr


def test_extra_ansible_vars_are_merged_over_the_vagrantfile_ones(project: Path) -> None:
    config = evaluate(project, "libvirt", ansible_extra_vars='{"kafka_heap": "512m"}')
    extra = config["provisioners"][1]["extra_vars"]
    assert extra["kafka_heap"] == "512m"
    assert extra["os_tuning_data_disk_device"] == "/dev/disk/by-id/virtio-kafka-data"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("memory_mb", "8GB", 'TELEMETRY_VM_MEMORY_MB="8GB" is not a positive integer'),
        ("cpus", "0", 'TELEMETRY_VM_CPUS="0" is not a positive integer'),
        ("producer_source", "ftp", 'TELEMETRY_VM_PRODUCER_SOURCE="ftp" is not one of binance, replay'),
        ("ansible_extra_vars", "[1]", 'TELEMETRY_VM_ANSIBLE_EXTRA_VARS="[1]" is not a JSON object'),
    ],
)
def test_bad_override_stops_vagrant_with_the_variable_named(
    project: Path, variable: str, value: str, message: str
) -> None:
    proc = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=project,
        env=vagrant_env(project.parent, **{variable: value}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_vagrant_validate_passes(project: Path) -> None:
    proc = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=project,
        env=vagrant_env(project.parent),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Vagrantfile validated successfully" in proc.stdout
