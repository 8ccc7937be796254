"""Spark Structured Streaming job: raw trades -> validated -> 1-minute VWAP/OHLC windows on Kafka."""
