"""voe: collect flight fares at scale with a ZeroMQ master, gevent workers and a sink."""

__version__ = "0.1.0"
