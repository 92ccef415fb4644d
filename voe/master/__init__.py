"""The master (the original's "ventilator"): everything that runs only in its process.

``loop`` serves the sockets; ``ledger`` is its durable job state, ``plan`` the plan
file it expands into jobs, ``peers`` the workers as it sees them, ``pacing`` the
per-airline budgets, ``retrying`` the backoff between attempts, and ``lock`` keeps one
master per data dir.
"""
