"""Every setting of voe with its default, read with python-decouple.

Values come from the environment first, then from ``.env`` in the working
directory, then from the defaults below. A malformed value is a ``SettingsError``
whose message names the setting, the value and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from decouple import Config, RepositoryEmpty, RepositoryEnv, UndefinedValueError

from voe import casts
from voe.components import normal_orders


class SettingsError(Exception):
    """A setting is missing or malformed; the message is meant for the user."""


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default (as text, like in ``.env``), parser and meaning."""

    name: str
    default: str
    cast: Callable[[str], Any]
    expected: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("MASTER_IP", "127.0.0.1", casts.text, "a host name or address",
            "Address of the master that workers and the sink connect to."),
    Setting("SINK_IP", "127.0.0.1", casts.text, "a host name or address",
            "Address of the sink that workers push results to."),
    Setting("VOE_BIND_IP", "127.0.0.1", casts.text, "an address",
            "Address the master and the sink listen on (0.0.0.0 on a fleet)."),
    Setting("VOE_JOBS_PORT", "1313", casts.port, "a port number (1-65535)",
            "Master port where workers take jobs and send credit and heartbeats."),
    Setting("VOE_CONTROL_PORT", "13131", casts.port, "a port number (1-65535)",
            "Master port where the sink acknowledges stored results."),
    Setting("VOE_RESULTS_PORT", "13132", casts.port, "a port number (1-65535)",
            "Sink port where workers push results."),
    Setting("VOE_DATA_DIR", ".", casts.text, "a directory",
            "Where the ledger (ledger.db), the store (fares.db) and the logs go."),
    Setting("VOE_PLAN", "", casts.text, "a path to a plan file",
            "Collection plan used when --plan is not given; empty means the demo plan."),
    Setting("VOE_DEMO_AIRLINE_URL", "http://127.0.0.1:8800", casts.url, "an http(s) URL",
            "Base URL of the demo airline that the demo backend searches."),
    Setting("VOE_CONCURRENCY", "16", casts.positive_int, "a whole number of at least 1",
            "Searches a worker runs at once."),
    Setting("VOE_WORKER_MALLOC", "jemalloc", casts.allocator, "jemalloc or system",
            "C allocator a worker runs on: jemalloc when installed (Debian's libjemalloc2; "
            "the worker restarts itself once with it preloaded, unless LD_PRELOAD is "
            "already set), about a tenth less CPU per parsed page than glibc's malloc; "
            "system keeps the system's."),
    Setting("VOE_PREFETCH", "2", casts.non_negative_int, "a whole number of at least 0",
            "Jobs a worker may hold beyond its free concurrency."),
    Setting("VOE_PREFETCH_SECONDS", "0.01", casts.non_negative_float,
            "a number of seconds, 0 or more",
            "A worker whose jobs finish fast holds this much of its pace in jobs beyond "
            "VOE_PREFETCH (up to 8x its concurrency), so quick jobs do not wait on messages; "
            "0 keeps the prefetch at VOE_PREFETCH."),
    Setting("VOE_MAX_UNSTORED", "5000", casts.positive_int, "a whole number of at least 1",
            "Results between the workers and the store (finished, not yet acknowledged) at "
            "which the master stops leasing until the sink catches up."),
    Setting("VOE_AUDIT_SHARE", "0.03", casts.share, "a share from 0 to 0.5",
            "Share of each backend's budget a continuous scheduler spends re-searching stored "
            "searches chosen at random, to measure how stale the store is."),
    Setting("VOE_CLOCK_SPEED", "1", casts.positive_float, "a positive number",
            "How many times faster than the wall clock the master's continuous schedulers "
            "see time run (simulations against a demo airline with --clock-speed)."),
    Setting("VOE_CLOCK_ORIGIN", "0", casts.non_negative_float, "epoch seconds",
            "The wall time at which the schedulers' clock reads the same as the wall clock "
            "(the demo airline's --clock-origin); matters only with VOE_CLOCK_SPEED."),
    Setting("VOE_HEARTBEAT_SECONDS", "1.0", casts.positive_float, "a positive number of seconds",
            "Interval of heartbeats between workers and the master."),
    Setting("VOE_HEARTBEAT_LIVENESS", "5", casts.positive_int, "a whole number of at least 1",
            "Missed heartbeats after which a peer counts as gone."),
    Setting("VOE_HTTP_TIMEOUT", "10", casts.positive_float, "a positive number of seconds",
            "Read timeout of each airline request."),
    Setting("VOE_MAX_MESSAGE_BYTES", "1048576", casts.positive_int, "a whole number of bytes",
            "Largest message any voe socket accepts; bigger frames are dropped."),
    Setting("VOE_CURVE", "on", casts.boolean, "on or off",
            "CURVE encryption and authentication on every voe socket; off sends everything "
            "in clear text to anyone (a warning is logged at start)."),
    Setting("VOE_KEYS_DIR", "", casts.text, "a directory",
            "Where the CURVE keys are (made by voe keys init); empty means keys/ in "
            "VOE_DATA_DIR."),
    Setting("VOE_LOG_LEVEL", "INFO", casts.log_level, "DEBUG, INFO, WARNING or ERROR",
            "Level of the master.log, sink.log and worker.log files."),
    Setting("VOE_HTTP_CONNECT_TIMEOUT", "5", casts.positive_float, "a positive number of seconds",
            "Connect timeout of each airline request (VOE_HTTP_TIMEOUT is the read timeout)."),
    Setting("VOE_HTTP_RETRIES", "3", casts.non_negative_int, "a whole number of at least 0",
            "Retries of one airline request after a connection error, timeout, 5xx or 429, "
            "before the attempt fails."),
    Setting("VOE_HTTP_BACKOFF", "0.5", casts.non_negative_float, "a number of seconds (0 or more)",
            "Wait before the first retry, doubled at each next one, plus random jitter of up "
            "to as much; a Retry-After answer is honoured instead (up to 10 s)."),
    Setting("VOE_HOST_CONCURRENCY", "0", casts.non_negative_int, "a whole number of at least 0",
            "Requests a worker sends at once to one airline host; 0 means only "
            "VOE_CONCURRENCY limits them."),
    Setting("VOE_HTTP_PROXY", "", casts.proxy, "an http(s) URL or nothing",
            "Proxy of every airline request; empty means the usual HTTP_PROXY/HTTPS_PROXY "
            "environment variables."),
    Setting("VOE_USER_AGENT", "", casts.text, "a User-Agent header value",
            "User-Agent of airline requests; empty means voe/VERSION."),
    Setting("VOE_PROXIES", "", casts.proxy_list, "http(s) proxy URLs separated by commas",
            "Proxies the fetch identities rotate over (one identity each at a time); empty "
            "means VOE_PROXIES_FILE, else no proxy of voe's own (VOE_HTTP_PROXY applies)."),
    Setting("VOE_PROXIES_FILE", "", casts.text, "a file path or nothing",
            "File of proxy URLs, one a line (# starts a comment), used when VOE_PROXIES is "
            "empty."),
    Setting("VOE_USER_AGENTS", "", casts.text, "User-Agent values separated by |",
            "User-Agents the fetch identities take in turn; empty means VOE_USER_AGENT."),
    Setting("VOE_IDENTITY_MAX_USES", "50", casts.positive_int, "a positive whole number",
            "Jobs one identity (proxy, cookies, User-Agent) serves before it is retired; a "
            "block retires it at once."),
    Setting("VOE_PROXY_COOLDOWN", "60", casts.non_negative_float, "a number of seconds",
            "How long a proxy whose identity met a block (or that failed three connections) "
            "rests before a new identity may use it."),
    Setting("VOE_FETCH_DEADLINE", "20", casts.positive_float, "a positive number of seconds",
            "Longest time of one fetch, its retries and its whole body included (a browser "
            "page's render too); a slower answer (e.g. trickled byte by byte) is abandoned "
            "as a transient error."),
    Setting("VOE_FETCH_MAX_BYTES", "4194304", casts.positive_int, "a whole number of bytes",
            "Largest body a fetch may bring, checked while it streams; a bigger one is "
            "abandoned as a transient error, never held in memory."),
    Setting("VOE_FETCH_BLOCK_STATUSES", "403,429", casts.status_list,
            "HTTP statuses separated by commas",
            "Answers that mean the airline blocks us (429: still there after the retries); "
            "the attempt ends as blocked."),
    Setting("VOE_FETCH_MIDDLEWARES", "", normal_orders,
            "module:Class=ORDER items separated by commas",
            "Fetch middlewares to add or move (ORDER), or remove (=none), over the built-in "
            "ones and the voe.fetch_middlewares entry points."),
    Setting("VOE_MASTER_MIDDLEWARES", "", normal_orders,
            "module:Class=ORDER items separated by commas",
            "Master middlewares to add or move (ORDER), or remove (=none), over the built-in "
            "ones and the voe.master_middlewares entry points."),
    Setting("VOE_KEEP_PAGE_BYTES", "1048576", casts.non_negative_int, "a whole number of bytes",
            "Most bytes kept of each page that failed to parse (in pages/ of the data dir); "
            "0 keeps none."),
    Setting("VOE_FARE_PIPELINES", "", normal_orders, "path:Class=ORDER or =none, by commas",
            "Fare pipeline stages to add, move or remove (=none), e.g. "
            "mypkg.checks:Fares=550,voe.worker.farepipeline.times:Times=none."),
    Setting("VOE_PRICE_MIN", "1", casts.positive_float, "a positive number",
            "Lowest price a fare may have; below it the page is a parse error (a misread)."),
    Setting("VOE_PRICE_MAX", "1000000", casts.positive_float, "a positive number",
            "Highest price a fare may have; above it the page is a parse error (a misread)."),
    Setting("VOE_BROWSER", "", casts.text, "a Chromium executable",
            "Headless Chromium that browser backends (demo-js) drive through Playwright "
            "(given as its executable; no browser is ever downloaded); empty means "
            "chromium-headless-shell if installed (the lighter build Playwright itself uses "
            "for headless pages), else chromium."),
    Setting("VOE_BROWSER_PAGES", "4", casts.positive_int, "a whole number of at least 1",
            "Browser pages a worker renders at once; each identity's pages share a browser "
            "context of its own."),
    Setting("VOE_BROWSER_BLOCK", "image,font", casts.resource_types,
            "resource types by commas (empty: none)",
            "Requests browser pages never send, by Playwright resource type (image, font, "
            "media, stylesheet, script, ...): what a fare page does not need. Images and "
            "fonts cost nothing to block; any other type puts every request through "
            "DevTools' interception (5-8% more CPU a page)."),
    Setting("VOE_BROWSER_VIEWPORT", "1280x64", casts.viewport, "WIDTHxHEIGHT in CSS pixels",
            "Window of every browser page: its width lays the page out as a desktop "
            "browser's; its height is all Chromium paints (64 took a tenth off a render's "
            "CPU against 720). Raise it for a site that loads fares as they scroll into view."),
    Setting("VOE_CLUSTER", "voe", casts.cluster_name, "letters, digits, - and _ (at most 40)",
            "Name of this fleet on EC2: voe tags every instance it launches with it and "
            "terminates only instances that carry it."),
    Setting("REGION", "us-east-1", casts.text, "an AWS region name", "AWS region of the fleet."),
    Setting("DEFAULT_INSTANCE_ID", "", casts.text, "an AMI id (ami-...)",
            "AMI the fleet's machines boot: a Linux with Python 3.11+ and its venv module."),
    Setting("INSTANCE_SIZE", "t3.small", casts.text, "an EC2 instance type",
            "Instance type of every machine of the fleet."),
    Setting("DEFAULT_SECURITY_GROUP", "", casts.text, "a security group name or id",
            "Extra security group given to every machine besides the cluster's own; "
            "empty means none."),
    Setting("KEY_NAME", "", casts.text, "an EC2 key pair name",
            "EC2 key pair the machines accept for SSH (its private key: VOE_SSH_KEY_FILE)."),
    Setting("KEY_PASS", "", casts.text, "a passphrase",
            "Passphrase of the SSH private key; empty means the key is not encrypted.",
            secret=True),
    Setting("SSH_USER", "ubuntu", casts.text, "a user name",
            "SSH user on the machines, unless the SSH config names one for the machine."),
    Setting("AWS_ACCESS_KEY", "", casts.text, "an AWS access key id",
            "AWS access key id; empty means the standard AWS credential chain.", secret=True),
    Setting("AWS_SECRET_KEY", "", casts.text, "an AWS secret access key",
            "AWS secret access key that goes with AWS_ACCESS_KEY.", secret=True),
    Setting("AWS_ENDPOINT_URL", "", casts.url_or_empty, "an http(s) URL or nothing",
            "EC2 API endpoint; empty means AWS's own for REGION."),
    Setting("PARAMIKO_DEBUG", "False", casts.boolean, "true or false",
            "Log every SSH exchange of voe cloud to paramiko.log in the data dir."),
    Setting("VOE_OPERATOR_CIDR", "", casts.ipv4_network_or_empty,
            "an IPv4 network, e.g. 203.0.113.7/32",
            "The only addresses allowed to SSH to the fleet (yours); voe cloud up requires it."),
    Setting("VOE_SSH_KEY_FILE", "", casts.text, "a path to a private key",
            "Private key of KEY_NAME for SSH to the machines; empty means ~/.ssh/KEY_NAME.pem."),
    Setting("VOE_SSH_CONFIG", "~/.ssh/config", casts.text, "a path",
            "OpenSSH client config read for each machine (Host is the machine's address; "
            "HostName, User, Port and IdentityFile are honoured)."),
    Setting("VOE_SSH_ADDRESS", "public", casts.ssh_address, "public or private",
            "Address voe connects to over SSH: public (private when a machine has none) or "
            "private (from inside the VPC or through a VPN)."),
    Setting("VOE_SSH_TIMEOUT", "300", casts.positive_float, "a positive number of seconds",
            "Longest wait for a machine to answer SSH before its deploy fails."),
    Setting("VOE_SSH_CONSOLE_WAIT", "120", casts.non_negative_float,
            "a number of seconds, 0 or more",
            "Longest wait, once a new machine answers SSH, for its EC2 console output to list "
            "its host key fingerprints; after it the key is trusted on first use, with a "
            "warning."),
    Setting("VOE_SSH_KNOWN_HOSTS", "~/.voe/known_hosts", casts.text, "a path",
            "Where voe keeps each machine's SSH host key: checked against the fingerprints of "
            "its EC2 console output on first use, a changed key is refused."),
    Setting("VOE_REMOTE_PYTHON", "python3", casts.text, "a command or path",
            "Python 3.11+ on the machines, from which voe makes its venv (~/voe-env)."),
    Setting("VOE_REMOTE_PIP_OPTIONS", "", casts.text, "pip install options",
            "Extra options of pip install on the machines, e.g. --no-index --find-links DIR "
            "for a fleet without internet."),
    Setting("VOE_DEPLOY_PACKAGE", "", casts.text, "a path to a wheel or sdist",
            "What voe cloud installs on the machines; empty means a wheel built from this "
            "checkout."),
    Setting("VOE_STORE_URL", "", casts.store_url, "empty, a postgresql:// or a sqlite:/// URL",
            "Where the sink stores fares and reports read them: empty means fares.db in "
            "VOE_DATA_DIR; postgresql://USER@HOST:PORT/DB selects PostgreSQL.", secret=True),
    Setting("VOE_HTTP_HOST", "127.0.0.1", casts.text, "an address",
            "Address the master's and the sink's HTTP servers (/metrics) listen on."),
    Setting("VOE_HTTP_PORT", "13180", casts.port_or_off, "a port number (0-65535)",
            "Master port serving the dashboard (/), the control API (/api/...) and /metrics "
            "on VOE_HTTP_HOST; 0 turns it off."),
    Setting("VOE_HTTP_TOKEN", "", casts.text, "a secret string",
            "Bearer token the master's HTTP port requires (Authorization: Bearer TOKEN); "
            "required, of at least 16 characters, when VOE_HTTP_HOST is not a loopback "
            "address.", secret=True),
    Setting("VOE_SINK_HTTP_PORT", "13181", casts.port_or_off, "a port number (0-65535)",
            "Sink port serving Prometheus metrics at /metrics on VOE_HTTP_HOST; 0 turns it off."),
    Setting("VOE_AMQP_URL", "", casts.amqp_url_or_empty, "empty or an amqp:// URL",
            "RabbitMQ broker the sink publishes events to (amqp://USER:PASS@HOST:5672/VHOST); "
            "empty means none.", secret=True),
    Setting("VOE_AMQP_EXCHANGE", "voe.events", casts.text, "an exchange name",
            "Durable topic exchange of the events on VOE_AMQP_URL (declared if missing)."),
    Setting("VOE_NATS_URL", "", casts.nats_url_or_empty, "empty or nats:// URLs",
            "NATS server(s) with JetStream the sink publishes events to (nats://HOST:4222); "
            "empty means none.", secret=True),
    Setting("VOE_NATS_STREAM", "VOE_EVENTS", casts.nats_name, "letters, digits, - and _",
            "JetStream stream of the events on VOE_NATS_URL (created if missing)."),
    Setting("VOE_NATS_SUBJECT", "voe", casts.nats_subject, "a subject prefix, e.g. voe",
            "Subject prefix of the events on NATS: PREFIX.KIND.BACKEND.ORIGIN.DESTINATION; a "
            "new stream takes PREFIX.>."),
    Setting("VOE_WEBHOOK_URLS", "", casts.url_list, "http(s) URLs separated by commas",
            "URLs the sink POSTs every event to, as signed JSON; empty means none.",
            secret=True),
    Setting("VOE_WEBHOOK_SECRET", "", casts.text, "a shared secret",
            "Key of the X-Voe-Signature HMAC-SHA256 of every webhook's time and body; "
            "required with VOE_WEBHOOK_URLS.", secret=True),
    Setting("VOE_WEBHOOK_MAX_ATTEMPTS", "5", casts.positive_int, "a whole number of at least 1",
            "Attempts of a webhook event answered with an error before it is a dead letter "
            "(voe outbox)."),
    Setting("VOE_WEBHOOK_BACKOFF", "1.0", casts.non_negative_float,
            "a number of seconds (0 or more)",
            "Wait before a webhook event's second attempt, doubled at each next one."),
    Setting("VOE_WEBHOOK_TIMEOUT", "10", casts.positive_float, "a positive number of seconds",
            "Time a webhook receiver has to answer before the attempt counts as failed."),
    Setting("VOE_PUBLISH_MAX_BACKOFF", "30", casts.positive_float, "a positive number of seconds",
            "Longest wait between retries of a destination that is down (events wait in the "
            "outbox meanwhile)."),
    Setting("VOE_OUTBOX_KEEP_HOURS", "24", casts.non_negative_float,
            "a number of hours (0 or more)",
            "How long the outbox keeps an event once every destination has published it "
            "(dead letters stay until re-sent); 0 keeps every event."),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}

# The secret settings each role reads; a child of `voe run` is given no other secret.
# The cloud's (AWS keys, KEY_PASS) belong to no role: only `voe cloud` reads them.
ROLE_SECRETS: dict[str, frozenset[str]] = {
    "master": frozenset({"VOE_STORE_URL", "VOE_HTTP_TOKEN"}),  # the API reads the store
    "sink": frozenset({"VOE_STORE_URL", "VOE_HTTP_TOKEN", "VOE_AMQP_URL", "VOE_NATS_URL",
                       "VOE_WEBHOOK_URLS", "VOE_WEBHOOK_SECRET"}),
    "worker": frozenset(),
    "demo-airline": frozenset(),
}


def withheld_secrets(role: str) -> frozenset[str]:
    """The secret settings ``role`` does not read, so its process must not hold them."""
    return frozenset(setting.name for setting in SETTINGS
                     if setting.secret and setting.name not in ROLE_SECRETS.get(role, ()))


class Settings:
    """The resolved settings; attribute names are the setting names in lower case."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self._values = values
        self.sources = sources

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        """The data directory as a path (created on demand by the roles)."""
        return Path(self._values["VOE_DATA_DIR"]).expanduser()

    def as_env(self) -> dict[str, str]:
        """Every setting as text, for handing to a child process's environment."""
        return {name: str(value) for name, value in self._values.items()}


class Reading(NamedTuple):
    """One setting as read: its raw text, where it came from, and its value or what is wrong."""

    setting: Setting
    raw: str
    source: str
    value: Any
    error: str | None


def read(env_file: str | os.PathLike[str] = ".env") -> list[Reading]:
    """Read every setting from the environment, then ``env_file``, then the defaults.

    A malformed value does not stop the reading: its ``error`` says what was expected,
    so ``voe settings`` can show every setting with the bad ones marked.
    """
    path = Path(env_file)
    repository = RepositoryEnv(str(path)) if path.is_file() else RepositoryEmpty()
    config = Config(repository)
    readings = []
    for setting in SETTINGS:
        if setting.name in os.environ:
            source = "environment"
        elif path.is_file() and setting.name in repository.data:
            source = str(path)
        else:
            source = "default"
        try:
            raw = str(config(setting.name, default=setting.default))
        except UndefinedValueError:
            readings.append(Reading(setting, "", source, None, "missing"))
            continue
        try:
            readings.append(Reading(setting, raw, source, setting.cast(raw.strip()), None))
        except ValueError:
            readings.append(Reading(setting, raw, source, None, f"expected {setting.expected}"))
    return readings


def load(env_file: str | os.PathLike[str] = ".env") -> Settings:
    """Read every setting (see ``read``); ``SettingsError`` names the first malformed one."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for reading in read(env_file):
        name = reading.setting.name
        if reading.error == "missing":
            raise SettingsError(f"setting {name} is missing")
        if reading.error is not None:
            shown = "(value hidden: a secret)" if reading.setting.secret else repr(reading.raw)
            raise SettingsError(f"setting {name}={shown} (from {reading.source}): "
                                f"{reading.error}")
        values[name] = reading.value
        sources[name] = reading.source
    return Settings(values, sources)


def describe(name: str) -> Setting:
    """Return the definition of the setting ``name``."""
    return _BY_NAME[name]
