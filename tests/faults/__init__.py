"""`make faults`: the fault matrix. Each case runs the whole pipeline on loopback (fake Binance ->
producer -> Kafka 4 -> Spark 4 -> Kafka), injects one fault while the same seeded trades are fed,
and reports what was lost or doubled, whether the closed windows equal the undisturbed run's and
the exact reference, whether the fault was counted where an operator would see it, and whether
the processes are alive (or were restarted the way systemd's Restart=on-failure would).

Layout: `dataset` (the trades), `cases` (what each case injects and its sizes), `checks` (pure
verdicts over plain data), `supervisor` and `runner` (the processes and the I/O), `report`
(table and JSON), `__main__` (the command line).
"""
