"""The master's HTTP port: the dashboard, the JSON control API and ``/metrics``.

``app`` builds the FastAPI apps (typed routes, so the OpenAPI document is generated
from them; ``models`` are the answers' shapes); ``guard`` is the middleware every
request passes (limits, auth, security headers) and ``auth`` its decisions;
``server`` runs uvicorn in a thread beside a role's loop, on ``protocol``'s guarded
h11; ``control`` hands actions to the master's loop; ``client`` asks them of a running
master from the command line; ``static/`` is the dashboard.
"""
