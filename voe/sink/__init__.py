"""The sink's side: receive results, store each exactly once, acknowledge them, and publish
stored fares through the outbox publishers."""
