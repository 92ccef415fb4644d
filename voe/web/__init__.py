"""The master's HTTP port: the dashboard, the JSON control API and ``/metrics``.

``server`` serves HTTP in a thread beside the master's loop; ``api`` answers the
JSON endpoints from the ledger and store files (read-only) and hands actions to the
master through ``control``'s command queue; ``auth`` decides who may ask;
``openapi`` describes the API; ``static/`` is the dashboard.
"""
