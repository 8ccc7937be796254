# Single entry point: set-up, demo, tests, lint, provisioning checks.
# `make help` lists the targets.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JARS := .cache/jars
SPARK_CONNECTOR_JARS := spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2
SOURCE ?= replay
# full: the published figures; ci: the reduced run CI makes (minutes, fails on any correctness break).
SIZE ?= full

.PHONY: help install venv jars system-deps demo test lint bench faults cluster-test cluster-bench molecule molecule-cluster vagrant-test vagrant-docker-test clean

help:
	@echo "make demo          run the whole pipeline locally (SOURCE=replay|binance|binance_ws), dashboard on :8501"
	@echo "make test          install everything and run the test suite (what CI runs)"
	@echo "make lint          ruff, mypy, yamllint, ansible-lint"
	@echo "make bench         latency, throughput, catch-up, memory, dashboard, exactness (SIZE=full|ci)"
	@echo "make faults        the fault matrix: kill, stop, bad answers, bad records (SIZE=full|ci)"
	@echo "make cluster-test  the pipeline on a 3-node Kafka cluster: leader loss, rolling restart, controller loss"
	@echo "make cluster-bench leader loss on a 3-node Kafka cluster, 3 runs: producer stall, job recovery"
	@echo "make molecule      verify the Ansible roles on local systemd containers"
	@echo "make molecule-cluster  three Kafka nodes and a pipeline host in containers (not in CI)"
	@echo "make vagrant-test  vagrant up/verify/destroy through vagrant-libvirt (30-60 min under emulation)"
	@echo "make vagrant-docker-test  the Vagrantfile's provisioning chain on Vagrant's docker provider (minutes)"

install: venv jars

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

LEDGER_JAR := $(JARS)/spark/telemetry-ledger.jar

jars: $(JARS)/kafka/.fetched $(JARS)/spark/.fetched $(LEDGER_JAR)

$(JARS)/kafka/.fetched: app/localkafka/pom.xml
	rm -rf $(JARS)/kafka
	mvn --batch-mode --quiet -f app/localkafka/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)/kafka
	touch $@

# pyspark ships Spark and its own copies of the compression and logging jars; only the connector
# and what it adds are put on the job's classpath.
$(JARS)/spark/.fetched: app/processing/pom.xml
	rm -rf $(JARS)/spark
	mvn --batch-mode --quiet -f app/processing/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DincludeArtifactIds=$(SPARK_CONNECTOR_JARS) \
	    -DoutputDirectory=$(CURDIR)/$(JARS)/spark
	touch $@

# The job's stateful processor, compiled against the venv's pyspark (app/processing/java/build.sh).
$(LEDGER_JAR): $(JARS)/spark/.fetched $(VENV)/.installed $(wildcard app/processing/java/*.sh app/processing/java/telemetry/*.java)
	bash app/processing/java/build.sh $(PY) $@

system-deps:
	bash tests/system-deps.sh

demo: install
	$(PY) -m app.demo --source $(SOURCE)

test: system-deps install
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check app tests
	$(VENV)/bin/ruff format --check app tests
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -s ansible inventory
	cd ansible && ../$(VENV)/bin/ansible-lint --profile production

bench: system-deps install
	$(PY) -m tests.bench --size $(SIZE)

faults: system-deps install
	$(PY) -m tests.faults --size $(SIZE)

# The 3-node cluster fault cases (tests/cluster/README.md): kept out of `make test` for their 3 brokers.
cluster-test: system-deps install
	$(PY) -m pytest -m cluster tests/cluster

cluster-bench: system-deps install
	$(PY) -m tests.cluster --runs 3

molecule: install
	bash tests/ansible/molecule.sh

# The multi-node layout (ansible/molecule/cluster): four containers, too long for CI.
molecule-cluster: install
	MOLECULE_ARGS="--scenario-name cluster" MOLECULE_TIMEOUT_S=$${MOLECULE_TIMEOUT_S:-5400} \
	    bash tests/ansible/molecule.sh

vagrant-test: install
	bash tests/vagrant/run.sh

vagrant-docker-test: install
	bash tests/vagrant/docker/run.sh

clean:
	rm -rf .run results
