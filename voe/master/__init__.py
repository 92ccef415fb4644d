"""The master (the original's "ventilator"): everything that runs only in its process.

``loop`` polls, decodes, sends and keeps timers over a ``transport`` (ZeroMQ, or a
stub in tests); ``leasing`` holds the leasing state and its rules, ``cycles`` the open
cycles and their schedule; ``middleware`` names the hooks and ``middlewares`` holds the
built-in policies (pacing, metrics, the workers' snapshot, cycles, control). ``ledger``
(with ``ledgerreads``) is the durable job state, ``plan`` the plan file it expands into
jobs, ``peers`` the workers as it sees them, ``pacing`` the per-airline budgets,
``retrying`` the backoff between attempts, ``sinkstate`` what it knows of the sink, and
``lock`` keeps one master per data dir.
"""
