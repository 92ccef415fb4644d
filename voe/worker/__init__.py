"""The worker's side: a gevent pool that leases jobs, runs each through the fetch chain and
the backend, checks the fares in the fare pipeline and pushes the results to the sink."""
