"""Deploy voe to one machine over SSH, step by step, and start its role as a service.

The steps: wait for SSH, probe (the machine's own address, its service manager, its
Python), upload the package, install it into ``~/voe-env``, write ``~/.env``, start
the service, check that it stays up. Each step is reported as it begins, so a progress
display can show every machine's step; a failure stops that machine only and is
returned, with the step, as a result.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from voe.cloud import services
from voe.cloud.cluster import CloudError, CloudSettings, Machine
from voe.cloud.ssh import HostKeys, Remote, connect, last_line
from voe.keys import AUTHORIZED, admitted_key, bundle

# Where the package is uploaded on a machine (relative to the home).
DIST_DIR = "voe-dist"
# Name of the collection plan uploaded to the master (relative to the home).
PLAN_FILE = "plan.toml"
# Longest venv creation plus pip install on one machine.
INSTALL_TIMEOUT = 900.0

# What a machine tells about itself: the address it answered SSH on (its own view, so
# the private address on EC2), its home and user, its service manager, its Python.
PROBE = """echo "address=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)"
echo "home=$HOME"
echo "user=$(id -un)"
echo "services=$({services})"
{python} -c 'import sys; print("python=%d.%d" % sys.version_info[:2])'
"""

# Make the venv once (without its own pip when the machine's Python has one: quicker),
# then install the package with whichever pip there is.
INSTALL = """set -e
if [ ! -x {venv}/bin/python ]; then
  if {python} -m pip --version >/dev/null 2>&1; then
    {python} -m venv --without-pip --system-site-packages {venv}
  else
    {python} -m venv --system-site-packages {venv}
  fi
fi
if {venv}/bin/python -m pip --version >/dev/null 2>&1; then
  set -- {venv}/bin/python -m pip
else
  set -- {python} -m pip --python {venv}/bin/python
fi
"$@" install --quiet --disable-pip-version-check --no-input {options} {package}
"""

STEPS = ("waiting for SSH", "probing", "uploading", "installing", "configuring", "keys",
         "starting", "checking")


@dataclass
class DeployResult:
    """What happened on one machine: done, or the step that failed and why."""

    machine: Machine
    ok: bool
    step: str
    message: str
    address: str | None = None


@dataclass(frozen=True)
class Probe:
    """What a machine says about itself."""

    address: str
    service_manager: str
    home: str
    user: str


def env_file(role: str, values: dict[str, str], previous: str | None, cluster: str) -> str:
    """The machine's ``.env``: voe's values, then the lines it had that voe does not manage."""
    lines = [f"# Written by `voe cloud up` (cluster {cluster}, role {role}). Lines voe does",
             "# not write itself are kept when it writes this file again.",
             *(f"{name}={value}" for name, value in values.items())]
    kept = []
    for line in (previous or "").splitlines():
        name = line.split("=", 1)[0].strip()
        if line.startswith("#") or "=" not in line or name in values:
            continue
        kept.append(line)
    return "\n".join(lines + kept) + "\n"


# The keys folder on a machine: the default VOE_KEYS_DIR of a service run from the home.
REMOTE_KEYS = "keys"


def worker_key_name(machine: Machine) -> str:
    """The name of a worker machine's own CURVE client key: one per instance, revocable."""
    return f"worker-{machine.instance_id}"


def _keys_folder(remote: Remote) -> None:
    """Make ``~/keys`` and its admitted keys folder, private to the user."""
    remote.check(f"mkdir -p -m 700 {REMOTE_KEYS}/{AUTHORIZED} && chmod 700 {REMOTE_KEYS} "
                 f"{REMOTE_KEYS}/{AUTHORIZED}", "making the keys folder")


def admit(config: CloudSettings, host_keys: HostKeys, server: Machine,
          names: list[str]) -> None:
    """Admit the client keys ``names`` on a running master or sink (it re-reads them).

    Raises ``CloudError`` or an SSH error when the machine cannot be reached.
    """
    assert config.keys is not None
    remote = connect(config, server, host_keys)
    try:
        _keys_folder(remote)
        for name in names:
            remote.write(f"{REMOTE_KEYS}/{AUTHORIZED}/{name}.key",
                         admitted_key(config.keys, name), 0o600)
    finally:
        remote.close()


class Deployer:
    """Deploys one package to machines; safe to use from several threads at once."""

    def __init__(self, config: CloudSettings, package: Path, host_keys: HostKeys,
                 report: Callable[[Machine, str], None]) -> None:
        self.config = config
        self.package = package
        self.host_keys = host_keys
        self.report = report
        self.keys = config.keys

    def deploy(self, machine: Machine, values: dict[str, str],
               plan: Path | None = None) -> DeployResult:
        """Run every step on ``machine``; never raises for what goes wrong over there."""
        step = STEPS[0]
        remote: Remote | None = None
        address = None
        try:
            self.report(machine, step)
            remote = connect(self.config, machine, self.host_keys)
            step = self._step(machine, "probing")
            probe = self._probe(remote)
            address = probe.address
            step = self._step(machine, "uploading")
            package = self._upload(remote, plan)
            step = self._step(machine, "installing")
            self._install(remote, package)
            step = self._step(machine, "configuring")
            if plan is not None:
                values = {**values, "VOE_PLAN": PLAN_FILE}
            remote.write(".env", env_file(machine.role, values, remote.read(".env"),
                                          self.config.cluster), 0o600)
            if self.keys is not None:
                step = self._step(machine, "keys")
                self._send_keys(remote, machine)
            step = self._step(machine, "starting")
            log_size = self._log_size(remote, machine.role)
            self._start(remote, machine.role, probe)
            step = self._step(machine, "checking")
            detail = self._check(remote, machine.role, probe, log_size)
        except CloudError as error:
            return DeployResult(machine, False, step, str(error), address)
        except (OSError, EOFError, paramiko.SSHException) as error:
            return DeployResult(machine, False, step, _describe(error), address)
        except Exception as error:
            # A bug met on one machine must not hide what happened on the others: it is
            # reported in the summary, with its type, like any failure.
            return DeployResult(machine, False, step, f"unexpected {_describe(error)}", address)
        finally:
            if remote is not None:
                remote.close()
        self.report(machine, "done")
        return DeployResult(machine, True, "done", detail, address)

    def _send_keys(self, remote: Remote, machine: Machine) -> None:
        """Copy the role's CURVE keys into ``~/keys`` over SFTP (mode 0600, folders 0700).

        A worker gets its own client key (``worker_key_name``), made before the deploy.
        """
        assert self.keys is not None
        _keys_folder(remote)
        client = worker_key_name(machine) if machine.role == "worker" else "client"
        for name, text in bundle(self.keys, machine.role, client).items():
            remote.write(f"{REMOTE_KEYS}/{name}", text, 0o600)

    def _step(self, machine: Machine, step: str) -> str:
        self.report(machine, step)
        return step

    def _probe(self, remote: Remote) -> Probe:
        python = self.config.remote_python
        status, output = remote.run(PROBE.format(services=services.PROBE_SYSTEMD,
                                                 python=shlex.quote(python)), timeout=60)
        facts = {}
        for line in output.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                facts[name] = value.strip()
        if "python" not in facts or status != 0:
            raise CloudError(f"no usable {python} on the machine (VOE_REMOTE_PYTHON): "
                             f"{last_line(output)}")
        major, minor = (int(part) for part in facts["python"].split("."))
        if (major, minor) < (3, 11):
            raise CloudError(f"{python} on the machine is {major}.{minor}; voe needs 3.11 or "
                             "newer (VOE_REMOTE_PYTHON)")
        if not facts.get("address"):
            raise CloudError("the machine did not tell its address (no SSH_CONNECTION)")
        return Probe(address=facts["address"], service_manager=facts.get("services", ""),
                     home=facts.get("home", ""), user=facts.get("user", ""))

    def _upload(self, remote: Remote, plan: Path | None) -> str:
        remote.check(f"mkdir -p {DIST_DIR} {services.SERVICE_DIR}", "making voe's folders")
        target = f"{DIST_DIR}/{self.package.name}"
        remote.sftp.put(str(self.package), target + ".part")
        remote.sftp.posix_rename(target + ".part", target)
        if plan is not None:
            remote.write(PLAN_FILE, plan.read_text(encoding="utf-8"))
        return target

    def _install(self, remote: Remote, package: str) -> None:
        python = shlex.quote(self.config.remote_python)
        options = " ".join(shlex.quote(o) for o in shlex.split(self.config.pip_options))
        remote.check(INSTALL.format(python=python, venv=services.VENV, options=options,
                                    package=shlex.quote(package)),
                     f"installing voe into ~/{services.VENV}", timeout=INSTALL_TIMEOUT)

    def _log_size(self, remote: Remote, role: str) -> int:
        try:
            return remote.sftp.stat(services.log_name(role)).st_size or 0
        except FileNotFoundError:
            return 0

    def _start(self, remote: Remote, role: str, probe: Probe) -> None:
        if probe.service_manager == "systemd":
            remote.write(f"{services.SERVICE_DIR}/voe-{role}.service",
                         services.systemd_unit(role, probe.user, probe.home))
            remote.check(services.systemd_start(role), f"starting the voe-{role} unit")
            return
        remote.write(f"{services.SERVICE_DIR}/{role}-service.sh",
                     services.supervisor_script(role), 0o755)
        remote.check(services.supervisor_stop(role), f"stopping the previous {role}",
                     timeout=services.STOP_TIMEOUT + 30)
        remote.check(services.supervisor_start(role), f"starting the {role} service")

    def _check(self, remote: Remote, role: str, probe: Probe, log_size: int) -> str:
        command = (services.systemd_check(role) if probe.service_manager == "systemd"
                   else services.supervisor_check(role, log_size))
        state = last_line(remote.check(command, f"checking the {role} service", timeout=60))
        log = services.log_name(role)
        appended = self._log_tail(remote, log, log_size)
        failed = f"voe service: {role} exited" in appended
        if state == "finished" and not failed:
            return f"{role} ran and finished its work, log ~/{log}"
        if not state.startswith("running") or failed:
            output = "\n".join(line for line in appended.splitlines()
                                if "voe service:" not in line)
            raise CloudError(f"the {role} stopped right after starting: {last_line(output)} "
                             f"(see ~/{log} on the machine)")
        if not self._exists(remote, log):
            raise CloudError(f"the {role} runs but ~/{log} was not created")
        manager = "systemd unit" if probe.service_manager == "systemd" else "supervisor"
        return f"{role} {state} ({manager}), log ~/{log}"

    def _log_tail(self, remote: Remote, log: str, offset: int) -> str:
        try:
            with remote.sftp.open(log, "r") as remote_file:
                remote_file.seek(offset)
                return remote_file.read(65536).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _exists(self, remote: Remote, path: str) -> bool:
        try:
            remote.sftp.stat(path)
        except FileNotFoundError:
            return False
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
