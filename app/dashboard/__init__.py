"""Streamlit dashboard: live 1-minute OHLC, VWAP and pipeline health read from Kafka."""
