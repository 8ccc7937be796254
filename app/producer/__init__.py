"""The producer: Binance trades (live REST API v3 or a recorded file) -> the raw Kafka topic.

Pure parts: `weight_budget` (rate-limit arithmetic), `trades` (parsing, validation, gap
detection), `replay` stream arithmetic. I/O adapters: `binance` (HTTP), `kafka_io` (tail reader,
idempotent producer), `service` (the run loop), `__main__` (the process).
"""
