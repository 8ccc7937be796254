"""The kafka role's SASL_SSL branch: rendered through the role's own validation and templates, then
run for real where it can be here. The rendered topic script and health check log in, with the
rendered client.properties, to a SASL_SSL Kafka 4 broker on loopback (Kafka's own tools from the
Maven jars stand in for the image's; a `docker` shim runs `docker exec` locally). TLS without its
keystore, or with a password file open to others, stops the play before anything changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.localkafka.broker import DEFAULT_JARS_DIR
from tests.ansible.rendering import INVENTORY, Cases, Rendered, properties, render_all
from tests.security.conftest import ADMIN, APP, SecureKafka, secure_kafka  # noqa: F401 - the fixture
from tests.support.tls import password_file

# The tools' own log lines to stderr, warnings only, as in the image: the topic script's output
# must be its own report.
LOG4J = """Configuration:
  Appenders:
    Console: {name: STDERR, target: SYSTEM_ERR, PatternLayout: {pattern: "%p %m%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: STDERR}]}
"""
TOOLS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-configs.sh": "kafka.admin.ConfigCommand",
    "kafka-broker-api-versions.sh": "org.apache.kafka.tools.BrokerApiVersionsCommand",
}
# `docker exec [--env K=V]... CONTAINER COMMAND ARGS...`, run here with the tool of that name.
DOCKER_SHIM = """#!/bin/bash
set -euo pipefail
[[ $1 == exec ]] && shift
envs=()
while [[ $1 == --env ]]; do envs+=("$2"); shift 2; done
shift
tool=$(basename "$1")
shift
exec env "${envs[@]}" "$(dirname "$0")/$tool" "$@"
"""


def tool_dir(base: Path) -> Path:
    """Kafka's tools as the image names them, on the Maven jars, and the docker shim beside them."""
    tools = base / "bin"
    tools.mkdir(parents=True)
    (base / "log4j2.yaml").write_text(LOG4J)
    for name, main_class in TOOLS.items():
        (tools / name).write_text(
            "#!/bin/bash\n"
            "exec java -Xmx256m ${KAFKA_JVM_PERFORMANCE_OPTS:-} "
            f"-Dlog4j2.configurationFile={base / 'log4j2.yaml'} "
            f'-cp "{DEFAULT_JARS_DIR}/*" {main_class} "$@"\n'
        )
    (tools / "docker").write_text(DOCKER_SHIM)
    for tool in tools.iterdir():
        tool.chmod(0o755)
    return tools


def tls_vars(kafka: SecureKafka, secrets: Path, **changes: str) -> tuple[str, ...]:
    keystore_password = password_file(secrets.parent / "keystore.password", kafka.tls.keystore_password)
    values = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_port": kafka.broker.port,
        "kafka_secrets_mount": str(secrets),
        "kafka_tls_keystore_file": str(kafka.tls.keystore),
        "kafka_tls_keystore_password_file": str(keystore_password),
        "kafka_tls_ca_file": str(kafka.tls.ca_file),
        "kafka_sasl_admin_user": ADMIN,
        "kafka_sasl_admin_password_file": str(kafka.admin_password_file),
        "kafka_sasl_app_user": APP,
        "kafka_sasl_app_password_file": str(kafka.app_password_file),
    } | changes
    return ("-e", yaml.safe_dump(values, default_flow_style=True).strip())


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("role-tls") / "secrets"


@pytest.fixture(scope="module")
def rendered(
    secure_kafka: SecureKafka,  # noqa: F811
    secrets_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Rendered]:
    base = tmp_path_factory.mktemp("render-tls")
    loose = password_file(base / "loose.password", "abc", mode=0o644)
    quoted = password_file(base / "quoted.password", 'a"b')
    cases: Cases = {
        "tls": (INVENTORY / "localhost.yml", tls_vars(secure_kafka, secrets_dir)),
        "no_keystore": (
            INVENTORY / "localhost.yml",
            tls_vars(secure_kafka, secrets_dir, kafka_tls_keystore_file=""),
        ),
        "loose_password": (
            INVENTORY / "localhost.yml",
            tls_vars(secure_kafka, secrets_dir, kafka_sasl_app_password_file=str(loose)),
        ),
        "quoted_password": (
            INVENTORY / "localhost.yml",
            tls_vars(secure_kafka, secrets_dir, kafka_sasl_admin_password_file=str(quoted)),
        ),
    }
    return render_all(cases, base)


def test_the_tls_branch_serves_clients_and_brokers_over_sasl_ssl(rendered: dict[str, Rendered]) -> None:
    out = rendered["tls"].ok()
    config = properties(out / "localhost.server.properties")
    port = config["listeners"].split(",")[0].rsplit(":", 1)[1]
    assert config["listeners"] == f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:9093"
    assert config["advertised.listeners"] == f"SASL_SSL://127.0.0.1:{port}"
    assert config["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert config["inter.broker.listener.name"] == "SASL_SSL"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert config["ssl.keystore.type"] == "PKCS12"
    start = (out / "localhost.start-kafka.sh").read_text()
    assert f'--add-scram "$(scram {ADMIN} admin.password)"' in start
    assert f'--add-scram "$(scram {APP} app.password)"' in start


@pytest.fixture
def installed(rendered: dict[str, Rendered], secure_kafka: SecureKafka, secrets_dir: Path) -> Path:  # noqa: F811
    """The rendered TLS branch, with what tasks/tls.yml copies to the host where kafka_secrets_mount
    points."""
    out = rendered["tls"].ok()
    secrets_dir.mkdir(exist_ok=True)
    shutil.copy(secure_kafka.tls.ca_file, secrets_dir / "ca.pem")
    login = (out / "localhost.client.properties").read_text()
    # kafka-broker-api-versions gives up after 5 s, which a TLS and SCRAM handshake exceeds when
    # this shared machine is loaded (load average 50+ measured): the check's question is
    # unchanged, only the wait is longer.
    (secrets_dir / "client.properties").write_text(login + "request.timeout.ms=60000\n")
    return out


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    return tool_dir(tmp_path)


def test_the_rendered_topic_script_logs_in_and_creates_the_topics(installed: Path, tools: Path) -> None:
    def ensure_topics() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(installed / "localhost.ensure-topics.sh")],
            env={"PATH": f"{tools}:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
        )

    run = ensure_topics()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "created raw_crypto_trades" in run.stdout
    # A second run finds every topic as declared: nothing to report, so Ansible sees no change.
    again = ensure_topics()
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""


def render_probe(secure_kafka: SecureKafka, secrets: Path, tools: Path) -> str:  # noqa: F811
    import jinja2

    template = Path(__file__).resolve().parents[2] / "ansible/roles/kafka/templates/kafka-ready.sh.j2"
    script = jinja2.Template(template.read_text()).render(
        ansible_managed="test",
        kafka_ready_address="127.0.0.1",
        kafka_ready_port=secure_kafka.broker.port,
        kafka_ready_tls=True,
        kafka_secrets_mount=str(secrets),
    )
    return script.replace("/opt/kafka/bin/", f"{tools}/")


@pytest.mark.usefixtures("installed")
def test_the_health_check_logs_in_over_sasl_ssl(
    secure_kafka: SecureKafka,  # noqa: F811
    secrets_dir: Path,
    tools: Path,
    tmp_path: Path,
) -> None:
    script = render_probe(secure_kafka, secrets_dir, tools)
    # Docker retries a failing check (retries: 6); so does this test, as a loaded machine can make
    # the tool's own request time out.
    for _ in range(3):
        healthy = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
        if healthy.returncode == 0:
            break
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    # The same probe with a wrong password is turned away: unhealthy.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(secrets_dir / "ca.pem", wrong / "ca.pem")
    login = (secrets_dir / "client.properties").read_text()
    password = secure_kafka.admin_password_file.read_text().strip()
    (wrong / "client.properties").write_text(login.replace(password, "not-the-password"))
    refused = subprocess.run(
        ["bash", "-c", render_probe(secure_kafka, wrong, tools)], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0
    assert "Authentication failed" in refused.stderr, refused.stderr[-2000:]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "no_keystore",
            "TLS (SASL_SSL) needs files on the control node that are not set: kafka_tls_keystore_file",
        ),
        ("loose_password", "is mode 0644: a secret must not be readable by others"),
        ("quoted_password", "a password of letters, digits and"),
    ],
)
def test_a_missing_or_unsafe_secret_stops_the_play_before_anything_changes(
    rendered: dict[str, Rendered], case: str, message: str
) -> None:
    result = rendered[case]
    assert result.returncode != 0
    assert message in " ".join(result.output.split())
    assert not (result.out / "localhost.server.properties").exists()
