"""Reconciliation: every final window checked against the exchange's own 1-minute kline."""
