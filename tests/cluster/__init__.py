"""The pipeline on a 3-node Kafka cluster (tests/cluster/README.md): the fault cases, run by pytest,
and the leader-loss recovery figures, `python -m tests.cluster` (`make cluster-bench`)."""
