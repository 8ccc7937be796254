"""`make bench` (`python -m tests.bench --size full|ci`): the appliance's figures on loopback.

Real Kafka 4 broker, the real Spark job and producer processes, the fake Binance exchange. Measures
event-to-aggregate latency, replay throughput, producer catch-up against the weight budget, memory,
the dashboard's fragment time and VWAP exactness; writes results/bench/bench.json and latency.png.
Exit status 1 only when a correctness property breaks (see tests/bench/checks.py).
"""
