"""The OpenAPI 3 document of the master's HTTP port, served at ``/openapi.json``.

Built from the same limits as ``voe.web.api`` so the two cannot drift; a test checks
that its paths and methods are exactly the server's routes, and schemathesis checks
the server's answers against it.
"""

from __future__ import annotations

from typing import Any

from voe import __version__
from voe.ledger import STATES
from voe.web.api import DEFAULT_CHECK_LIMIT, DEFAULT_LIMIT, MAX_INTEGER, MAX_LIMIT

_INT = {"type": "integer", "minimum": 0}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_NULLABLE_STRING = {"type": "string", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_CYCLE_QUERY = _query("cycle", {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER},
                      "Only this cycle.")

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}),
    "Status": _object({
        "jobs": _object({state: _INT for state in STATES}),
        "fares": {**_INT, "description": "fares stored in every cycle"},
        "yield": {"type": "array", "items": {"type": "object"}},
        "field_yield": {"type": "array", "items": _object({
            "backend": {"type": "string"}, "cycle": _INT, "field": {"type": "string"},
            "valid": _INT, "invalid": _INT,
            "share": {"type": "number", "description": "share of the fares judged with the "
                      "field valid"},
            "previous_cycle": _NULLABLE_INT, "previous_share": _NULLABLE_NUMBER,
            "dropped": {"type": "boolean"}}),
            "description": "per-field yields of the latest cycle with field counts"},
        "cycle": {**_object({"number": _INT, "plan": {"type": "string"},
                             "started_at": {"type": "number"}, "total": _INT,
                             "finished_at": _NULLABLE_NUMBER,
                             "fares": {**_INT, "description": "fares stored in this cycle"},
                             "plan_changed": {**_object({
                                 "plan": {"type": "string"}, "jobs_kept": _INT,
                                 "plan_jobs": _INT}), "nullable": True, "description":
                                 "the plan the settings name, when it is not the one "
                                 "this open cycle started with"}}), "nullable": True},
        "master": _object({"running": {"type": "boolean"}, "pid": _NULLABLE_INT}),
        "workers": {"type": "array", "items": _object({
            "worker": {"type": "string"}, "concurrency": _INT, "prefetch": _INT,
            "held": {**_INT, "description": "jobs in flight"},
            "max_held": _INT,
            "finished": {**_INT, "description": "jobs the worker finished with, any outcome"},
            "last_seen": {"type": "number", "description": "unix time of its last message "
                                                          "(heartbeat)"},
            "alive": _INT,
            "address": {"type": "string", "description": "where it runs, \"IP (hostname)\" "
                        "as it told the master (the IP it reaches the master from); empty "
                        "when unknown"},
            "errors": {**_INT, "description": "its attempts that did not end done: failed "
                       "(retried or for good) or lease expired"},
            "identities": {"type": "array", "description": "its fetch identities per route "
                           "(proxy host:port, or direct), totals since it started",
                           "items": _object({"route": {"type": "string"},
                                             "blocks": {**_INT, "description": "blocks met"},
                                             "jobs": {**_INT, "description": "jobs served"},
                                             "retired": {**_INT, "description":
                                                         "identities retired"}})},
        }, ["worker", "concurrency", "prefetch", "held", "finished", "last_seen", "address",
            "errors"])},
        "outbox": _object({
            "destinations": {"type": "object", "description": "per destination (amqp:EXCHANGE, "
                             "nats:STREAM, webhook:URL)", "additionalProperties": _object({
                                 "backlog": {**_INT, "description": "events not yet delivered"},
                                 "retrying": {**_INT, "description": "dead letters sent back "
                                              "(voe outbox retry), not yet delivered"},
                                 "dead": {**_INT, "description": "dead letters"},
                                 "configured": {"type": "boolean", "description":
                                                "configured on the master's machine"}})},
            "dead_letters": _INT}),
        "data_dir": {"type": "string"},
    }),
    "Master": _object({
        "epoch": {"type": "string"}, "paused": {"type": "boolean"},
        "once": {"type": "boolean"}, "plan": {"type": "string"},
        "interval": _NULLABLE_NUMBER,
        "cycles": {"type": "array", "items": _INT, "description": "cycles still running"},
        "in_flight": _INT, "ready": _INT, "workers": _INT,
        "stats": {"type": "object", "additionalProperties": _INT},
        "rejected": _INT,
        "samples": {"type": "array", "description": "[unix time, jobs done, jobs failed] "
                    "since the master started, one a second, the last ten minutes",
                    "items": {"type": "array", "items": {"type": "number"},
                              "minItems": 3, "maxItems": 3}},
        "store": {"type": "string", "description": "where the sink stores (no password)"},
    }),
    "Job": _object({
        "cycle": _INT, "job_id": {"type": "string"}, "backend": {"type": "string"},
        "origin": {"type": "string"}, "destination": {"type": "string"},
        "date": {"type": "string"}, "return_date": _NULLABLE_STRING,
        "state": {"type": "string", "enum": list(STATES)}, "attempt": _INT,
        "worker": _NULLABLE_STRING, "error": _NULLABLE_STRING,
        "updated_at": _NULLABLE_NUMBER,
    }),
    "JobPage": _object({
        "state": {"type": "string", "enum": list(STATES), "nullable": True},
        "cycle": _NULLABLE_INT, "limit": _INT, "offset": _INT, "total": _INT,
        "jobs": {"type": "array", "items": _ref("Job")},
    }),
    "Check": _object({
        "ok": {"type": "boolean"},
        "totals": {"type": "object", "additionalProperties": _INT},
        "cycles": {"type": "array", "items": {"type": "object"}},
    }),
    "Routes": _object({"routes": {"type": "array", "items": {"type": "string"}}}),
    "Prices": _object({"route": {"type": "string"}, "date": _NULLABLE_STRING,
                       "prices": {"type": "array", "items": {"type": "object"}}}),
    "Cycle": _object({"cycle": _INT, "total": _INT}),
    "Paused": _object({"paused": {"type": "boolean"}}),
    "Retried": _object({"retried": _INT}),
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _json(_ref("Error"), "Bad input (a parameter, or an unknown one)."),
    "Unauthorized": _json(_ref("Error"), "VOE_HTTP_TOKEN is set and the request lacks "
                                          "Authorization: Bearer TOKEN."),
    "Forbidden": _json(_ref("Error"), "A browser request from another origin, or (without a "
                                       "token) a Host that is not loopback."),
    "Unavailable": _json(_ref("Error"), "The ledger or store cannot be read, or the master did "
                                         "not answer in time."),
}


def _operation(summary: str, ok: dict[str, Any], *, status: str = "200",
               parameters: list[dict[str, Any]] | None = None,
               refusals: dict[str, Any] | None = None) -> dict[str, Any]:
    responses = {status: ok, "400": _error("BadRequest"), "401": _error("Unauthorized"),
                 "403": _error("Forbidden"), "503": _error("Unavailable"), **(refusals or {})}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return operation


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every endpoint the server routes (``voe.web.api.ROUTES``)."""
    jobs_parameters = [
        _query("state", {"type": "string", "enum": list(STATES)}, "Only jobs in this state."),
        _CYCLE_QUERY,
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                         "default": DEFAULT_LIMIT}, "Jobs per page."),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER,
                          "default": 0}, "Jobs skipped."),
    ]
    paths: dict[str, Any] = {
        "/api/status": {"get": _operation(
            "Jobs by state (latest cycle), fares stored, master and workers: exactly "
            "`voe status --json`.", _json(_ref("Status"), "The status."))},
        "/api/master": {"get": _operation(
            "The running master's live state: paused or not, jobs in flight, counters and "
            "their samples (throughput).", _json(_ref("Master"), "The master's state."))},
        "/api/jobs": {"get": _operation(
            "A page of jobs, newest cycle first; `state=failed` lists the dead letters with "
            "their last error.", _json(_ref("JobPage"), "The page and the total that match."),
            parameters=jobs_parameters)},
        "/api/jobs/{cycle}/{job_id}/retry": {"post": _operation(
            "Send one failed job (dead letter) back to pending with fresh attempts.",
            _json(_ref("Retried"), "Re-queued."),
            parameters=[
                {"name": "cycle", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}},
                {"name": "job_id", "in": "path", "required": True,
                 "schema": {"type": "string", "minLength": 1}}],
            refusals={"404": _json(_ref("Error"), "No failed job with that id in that "
                                                  "cycle.")})},
        "/api/retry": {"post": _operation(
            "Send every failed job (or those of one cycle) back to pending with fresh "
            "attempts, like `voe failed --retry`.", _json(_ref("Retried"), "How many."),
            parameters=[_CYCLE_QUERY])},
        "/api/outbox/retry": {"post": _operation(
            "Send the outbox's dead letters (events a webhook gave up on) back to the sink's "
            "publishers, like `voe outbox retry`; a running sink delivers them.",
            _json(_ref("Retried"), "How many."),
            parameters=[_query("destination", {"type": "string", "minLength": 1},
                               "Only this destination, as `voe status` names it, e.g. "
                               "webhook:https://example.com/hook.")])},
        "/api/cycles": {"post": _operation(
            "Start the plan's next cycle now, without waiting for its interval.",
            _json(_ref("Cycle"), "The cycle started."), status="201",
            refusals={"409": _json(_ref("Error"), "A cycle is still running.")})},
        "/api/pause": {"post": _operation(
            "Pause leasing: no job is sent to workers (leases out finish or expire).",
            _json(_ref("Paused"), "Paused."))},
        "/api/resume": {"post": _operation(
            "Resume leasing.", _json(_ref("Paused"), "Leasing again."))},
        "/api/check": {"get": _operation(
            "The delivery audit of `voe check`: per cycle, jobs lost, stored but not done, "
            "duplicated and failed.", _json(_ref("Check"), "The audit."),
            parameters=[_query("limit", {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT,
                                         "default": DEFAULT_CHECK_LIMIT},
                               "Job ids listed per kind and cycle (0: all).")])},
        "/api/routes": {"get": _operation(
            "The routes (ORIG-DEST) of the latest cycle.", _json(_ref("Routes"), "Routes."))},
        "/api/prices": {"get": _operation(
            "A route's price history: its cheapest fare per date and cycle, flagging drops, "
            "like `voe prices ROUTE --json`.", _json(_ref("Prices"), "The history."),
            parameters=[
                {"name": "route", "in": "query", "required": True,
                 "schema": {"type": "string", "pattern": "^[A-Z0-9]{3}-[A-Z0-9]{3}$"},
                 "description": "ORIG-DEST, e.g. GRU-REC."},
                _query("date", {"type": "string", "format": "date"},
                       "Only this departure date.")])},
        "/metrics": {"get": _operation(
            "The master's Prometheus metrics.",
            {"description": "Prometheus text format.",
             "content": {"text/plain": {"schema": {"type": "string"}}}})},
        "/openapi.json": {"get": _operation(
            "This document.", {"description": "OpenAPI 3.0.",
                               "content": {"application/json": {"schema": {
                                   "type": "object"}}}})},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "voe master", "version": __version__,
                 "description": "The master's dashboard data and control API (VOE_HTTP_PORT). "
                                "Every answer is JSON; refusals are {\"error\": \"...\"}."},
        "servers": [{"url": "/"}],
        "security": [{}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "VOE_HTTP_TOKEN; required when it is set (always when "
                               "VOE_HTTP_HOST is not loopback)."}},
        },
    }
