"""The demo airline, its backends and plan, and ``voe run``'s local cluster: what voe runs
against when no real airline is reachable. Nothing outside this package imports it."""
