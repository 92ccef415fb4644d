"""SSH to the fleet's machines with paramiko: how to reach each, and a bounded wait.

Where a machine is reached is the user's OpenSSH client config (VOE_SSH_CONFIG), looked
up by the machine's address like ``ssh`` would: ``Host``, ``HostName``, ``User``, ``Port``
and ``IdentityFile`` are honoured. It is read again at every attempt, so a config that
changes while machines boot is seen. An instance's first host key is checked against the
fingerprints its EC2 console output lists (waiting up to VOE_SSH_CONSOLE_WAIT for them
once SSH answers), refused before anything is sent if it is not one of them, and trusted
on first use, with a warning, only when the console lists none. It is then remembered
per instance id; a machine whose key changes is refused before any login.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from voe.cloud import fingerprints
from voe.cloud.cluster import CloudConfigError, CloudError, CloudSettings, Machine

log = logging.getLogger(__name__)

# Pause between two connection attempts while a machine boots.
RETRY_INTERVAL = 1.0
# Longest single TCP connect, SSH banner and authentication wait.
CONNECT_TIMEOUT = 10.0
# Longest run of one remote command unless the caller says otherwise.
COMMAND_TIMEOUT = 600.0
# Least pause between two reads of a booting machine's console output (an EC2 API call).
CONSOLE_POLL_INTERVAL = 5.0


class HostKeys:
    """Host keys remembered per instance id in a known_hosts file, and where to check new ones.

    ``console`` gives an instance's EC2 console output (by instance id), whose listed
    fingerprints a first key must match; without it, first keys are trusted with a warning.
    """

    def __init__(self, path: Path, console: Callable[[str], str] | None = None) -> None:
        self.path = path
        self.console = console
        self._lock = threading.Lock()
        self._keys = paramiko.HostKeys()
        if path.is_file():
            try:
                self._keys.load(str(path))
            except (OSError, paramiko.SSHException) as error:
                raise CloudConfigError(f"cannot read {path} (VOE_SSH_KNOWN_HOSTS): "
                                       f"{error}") from None

    def known(self, instance_id: str) -> paramiko.PKey | None:
        """The key remembered for this instance, if any."""
        with self._lock:
            entry = self._keys.lookup(instance_id)
            return next(iter(entry.values())) if entry else None

    def remember(self, instance_id: str, key: paramiko.PKey) -> None:
        """Keep ``key`` as the instance's host key (written to the file at once)."""
        with self._lock:
            self._keys.add(instance_id, key.get_name(), key)
            self._save()

    def forget(self, instance_ids: list[str]) -> None:
        """Drop the keys of instances that are gone."""
        with self._lock:
            for instance_id in instance_ids:
                if instance_id in self._keys:
                    del self._keys[instance_id]
            if self.path.is_file():
                self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        self._keys.save(str(temporary))
        temporary.replace(self.path)


class HostKeyMismatch(paramiko.SSHException):
    """The host key presented is not one the instance's console output lists."""


class _NotListedYet(paramiko.SSHException):
    """The console output lists no fingerprints yet; the key can be neither checked nor trusted."""


class _FirstUse(paramiko.MissingHostKeyPolicy):
    """Check an instance's first key against its listed fingerprints, then remember it."""

    def __init__(self, keys: HostKeys, machine: Machine, expected: frozenset[str],
                 unchecked: str | None) -> None:
        self.keys = keys
        self.machine = machine
        self.expected = expected
        self.unchecked = unchecked

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        presented = fingerprints.sha256(key)
        if self.expected:
            if not fingerprints.matches(key, self.expected):
                raise HostKeyMismatch(
                    f"the SSH host key of {self.machine.label} is not one its EC2 console "
                    f"output lists: it presented {presented}, the console lists "
                    f"{', '.join(sorted(self.expected))}; nothing was sent to it")
        elif self.unchecked is None:
            raise _NotListedYet(presented)
        else:
            log.warning("warning: %s; trusting the SSH host key of %s on first use: %s",
                        self.unchecked, self.machine.label, presented)
        self.keys.remember(self.machine.instance_id, key)


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in to one machine, after the SSH config is applied."""

    hostname: str
    port: int
    user: str
    key_file: Path

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def resolve(config: CloudSettings, address: str) -> Target:
    """Apply the user's SSH config to ``address``, as ``ssh ADDRESS`` would."""
    options: dict = {}
    if config.ssh_config.is_file():
        try:
            options = paramiko.SSHConfig.from_path(str(config.ssh_config)).lookup(address)
        except (OSError, paramiko.SSHException, ValueError) as error:
            raise CloudConfigError(f"cannot read SSH config {config.ssh_config} "
                                   f"(VOE_SSH_CONFIG): {error}") from None
    try:
        port = int(options.get("port", 22))
    except ValueError:
        raise CloudConfigError(f"SSH config {config.ssh_config}: bad Port for {address}: "
                               f"{options.get('port')!r}") from None
    identity = options.get("identityfile")
    key_file = Path(identity[0]).expanduser() if identity else config.key_file
    return Target(hostname=options.get("hostname", address), port=port,
                  user=options.get("user", config.ssh_user), key_file=key_file)


_key_cache: dict[tuple[Path, str], paramiko.PKey] = {}
_key_lock = threading.Lock()


def load_key(path: Path, passphrase: str) -> paramiko.PKey:
    """Read a private key once (any type paramiko knows); a problem is a config error."""
    with _key_lock:
        cached = _key_cache.get((path, passphrase))
        if cached is not None:
            return cached
        try:
            key = paramiko.PKey.from_path(path, password=passphrase or None)
        except FileNotFoundError:
            raise CloudConfigError(f"SSH key file {path} does not exist") from None
        except paramiko.PasswordRequiredException:
            raise CloudConfigError(f"SSH key file {path} is encrypted: set KEY_PASS") from None
        except (OSError, paramiko.SSHException, ValueError) as error:
            raise CloudConfigError(f"cannot read SSH key file {path}: {error} "
                                   "(wrong KEY_PASS?)") from None
        _key_cache[(path, passphrase)] = key
        return key


class Remote:
    """A logged-in SSH connection to one machine: run commands, write files."""

    def __init__(self, client: paramiko.SSHClient, machine: Machine, target: Target) -> None:
        self.client = client
        self.machine = machine
        self.target = target
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session (opened on first use); relative paths are under the home."""
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        """Run ``command`` with ``sh``; return its exit status and output (stderr merged)."""
        channel = self.client.get_transport().open_session()
        try:
            channel.set_combine_stderr(True)
            channel.settimeout(1.0)
            channel.exec_command(f"sh -c {shlex.quote(command)}")
            output = bytearray()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    channel.status_event.wait(max(0.0, deadline - time.monotonic()))
                    break
                output += chunk
            if not channel.exit_status_ready():
                raise CloudError(f"a command on {self.machine.label} took longer than "
                                 f"{timeout:g} s")
            return channel.recv_exit_status(), output.decode("utf-8", "replace")
        finally:
            channel.close()

    def check(self, command: str, doing: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``command``; a non-zero exit is a ``CloudError`` quoting its last line."""
        status, output = self.run(command, timeout)
        if status != 0:
            raise CloudError(f"{doing} failed (exit status {status}): {last_line(output)}")
        return output

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write ``text`` to ``path`` (relative to the home) atomically, with ``mode``."""
        temporary = f"{path}.voe-new"
        with self.sftp.open(temporary, "w") as remote_file:
            remote_file.write(text.encode("utf-8"))
        self.sftp.chmod(temporary, mode)
        self.sftp.posix_rename(temporary, path)

    def read(self, path: str) -> str | None:
        """The text of ``path`` (relative to the home), or None if it does not exist."""
        try:
            with self.sftp.open(path, "r") as remote_file:
                return remote_file.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Close the SFTP session and the connection."""
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()


def last_line(output: str) -> str:
    """The last non-empty line of a command's output (where tools say what went wrong)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def connect(config: CloudSettings, machine: Machine, host_keys: HostKeys) -> Remote:
    """Log in to ``machine``, retrying until VOE_SSH_TIMEOUT while it boots.

    An unknown host key must be one the console output lists; while it lists none, SSH
    is tried again until VOE_SSH_CONSOLE_WAIT has passed since the machine first answered.
    """
    address = machine.ssh_address(config.ssh_address)
    deadline = time.monotonic() + config.ssh_timeout
    last_error = "no attempt made"
    attempts = 0
    expected: frozenset[str] = frozenset()
    next_read = time.monotonic()
    answered: float | None = None
    while True:
        target = resolve(config, address)
        key = load_key(target.key_file, config.key_pass)
        attempts += 1
        known = host_keys.known(machine.instance_id)
        if known is None and not expected and host_keys.console is not None and (
                time.monotonic() >= next_read):
            expected = fingerprints.listed(host_keys.console(machine.instance_id))
            next_read = time.monotonic() + CONSOLE_POLL_INTERVAL
        remaining = deadline - time.monotonic()
        client = _client(host_keys, machine, target, known, expected,
                         _unchecked(config, host_keys, answered))
        wait = max(1.0, min(CONNECT_TIMEOUT, remaining))
        try:
            client.connect(target.hostname, port=target.port, username=target.user, pkey=key,
                           timeout=wait, banner_timeout=wait, auth_timeout=wait,
                           look_for_keys=False, allow_agent=False)
            return Remote(client, machine, target)
        except paramiko.BadHostKeyException:
            client.close()
            raise CloudError(
                f"the SSH host key of {machine.label} at {target} is not the one voe saw "
                f"first; if the machine was rebuilt, remove its line ({machine.instance_id}) "
                f"from {config.known_hosts}") from None
        except HostKeyMismatch as error:
            client.close()
            raise CloudError(f"{error} at {target}") from None
        except _NotListedYet:
            client.close()
            if answered is None:
                answered = time.monotonic()
                next_read = answered
            # Not counted against VOE_SSH_TIMEOUT: the machine answers, and the wait for its
            # console output is bounded by VOE_SSH_CONSOLE_WAIT.
            time.sleep(RETRY_INTERVAL)
            continue
        except paramiko.AuthenticationException as error:
            client.close()
            last_error = f"authentication as {target.user} failed ({error})"
        except (OSError, paramiko.SSHException, EOFError) as error:
            client.close()
            last_error = _describe(error)
        if time.monotonic() + RETRY_INTERVAL >= deadline:
            raise CloudError(f"SSH to {machine.label} at {target} did not come up within "
                             f"{config.ssh_timeout:g} s ({attempts} attempt(s)): {last_error}")
        time.sleep(RETRY_INTERVAL)


def _client(host_keys: HostKeys, machine: Machine, target: Target, known: paramiko.PKey | None,
            expected: frozenset[str], unchecked: str | None) -> paramiko.SSHClient:
    """A client for one attempt: it knows ``machine``'s remembered key, if any, and checks
    a first one against the ``expected`` fingerprints (see ``_FirstUse``)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_FirstUse(host_keys, machine, expected, unchecked))
    if known is not None:
        name = target.hostname if target.port == 22 else f"[{target.hostname}]:{target.port}"
        client.get_host_keys().add(name, known.get_name(), known)
    return client


def _unchecked(config: CloudSettings, host_keys: HostKeys, answered: float | None
               ) -> str | None:
    """Why a first key may now be trusted unchecked (said in the warning), or None."""
    if host_keys.console is None:
        return "no console output to check host keys against"
    if config.console_wait <= 0:
        return "VOE_SSH_CONSOLE_WAIT is 0"
    if answered is not None and time.monotonic() >= answered + config.console_wait:
        return (f"the EC2 console output lists no SSH host key fingerprints "
                f"{config.console_wait:g} s after SSH answered (VOE_SSH_CONSOLE_WAIT)")
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(error.errors.values())
        if errors:
            return _describe(errors[0])
    if isinstance(error, TimeoutError):
        return "connection timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
