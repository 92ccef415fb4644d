"""A cluster as EC2 sees it: its name, the tags that mark its machines, its settings.

Every instance voe launches carries ``voe:cluster`` and ``voe:role`` from the moment it
exists (they are given to RunInstances itself), so nothing voe starts is ever untagged,
and teardown can select by tag alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from voe.keys import keys_dir
from voe.settings import Settings, describe

# Tag keys on instances and on the cluster's security group.
TAG_CLUSTER = "voe:cluster"
TAG_ROLE = "voe:role"
# The address the machine answered SSH on, as it sees itself: what its peers connect to.
TAG_ADDRESS = "voe:address"

ROLES = ("master", "sink", "worker")
# Instance states that count as a machine of the cluster (terminated ones do not).
LIVE_STATES = ("pending", "running", "stopping", "stopped")

# Settings voe writes into each machine's .env itself; --set may not override them.
MANAGED_ON_MACHINES = ("MASTER_IP", "SINK_IP", "VOE_JOBS_PORT", "VOE_CONTROL_PORT",
                       "VOE_RESULTS_PORT")
# Settings that only make sense on the operator's machine; never copied to the fleet.
OPERATOR_ONLY = ("REGION", "DEFAULT_INSTANCE_ID", "INSTANCE_SIZE", "DEFAULT_SECURITY_GROUP",
                 "KEY_NAME", "KEY_PASS", "SSH_USER", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
                 "AWS_ENDPOINT_URL", "PARAMIKO_DEBUG", "VOE_CLUSTER", "VOE_OPERATOR_CIDR",
                 "VOE_SSH_KEY_FILE", "VOE_SSH_CONFIG", "VOE_SSH_ADDRESS", "VOE_SSH_TIMEOUT",
                 "VOE_SSH_CONSOLE_WAIT", "VOE_SSH_KNOWN_HOSTS", "VOE_REMOTE_PYTHON",
                 "VOE_REMOTE_PIP_OPTIONS", "VOE_DEPLOY_PACKAGE")


class CloudError(Exception):
    """A fleet operation failed; the message is one line meant for the user."""

    exit_status = 1


class CloudConfigError(CloudError):
    """A setting or an argument is wrong: the user can fix it (exit status 2)."""

    exit_status = 2


@dataclass(frozen=True)
class CloudSettings:
    """The settings the fleet tooling uses, resolved from voe's settings."""

    cluster: str
    region: str
    image_id: str
    instance_type: str
    extra_group: str
    key_name: str
    key_pass: str
    key_file: Path
    ssh_user: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    endpoint_url: str
    paramiko_debug: bool
    operator_cidr: str
    ssh_config: Path
    ssh_address: str
    ssh_timeout: float
    console_wait: float
    known_hosts: Path
    remote_python: str
    pip_options: str
    deploy_package: str
    ports: dict[str, int]
    data_dir: Path
    keys: Path | None

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudSettings:
        """Pick the fleet's settings out of voe's settings."""
        key_file = settings.voe_ssh_key_file or (
            f"~/.ssh/{settings.key_name}.pem" if settings.key_name else "")
        return cls(
            cluster=settings.voe_cluster, region=settings.region,
            image_id=settings.default_instance_id, instance_type=settings.instance_size,
            extra_group=settings.default_security_group, key_name=settings.key_name,
            key_pass=settings.key_pass, key_file=Path(key_file).expanduser(),
            ssh_user=settings.ssh_user, access_key=settings.aws_access_key,
            secret_key=settings.aws_secret_key, endpoint_url=settings.aws_endpoint_url,
            paramiko_debug=settings.paramiko_debug, operator_cidr=settings.voe_operator_cidr,
            ssh_config=Path(settings.voe_ssh_config).expanduser(),
            ssh_address=settings.voe_ssh_address, ssh_timeout=settings.voe_ssh_timeout,
            console_wait=settings.voe_ssh_console_wait,
            known_hosts=Path(settings.voe_ssh_known_hosts).expanduser(),
            remote_python=settings.voe_remote_python,
            pip_options=settings.voe_remote_pip_options,
            deploy_package=settings.voe_deploy_package,
            ports={"VOE_JOBS_PORT": settings.voe_jobs_port,
                   "VOE_CONTROL_PORT": settings.voe_control_port,
                   "VOE_RESULTS_PORT": settings.voe_results_port},
            data_dir=settings.data_dir,
            keys=keys_dir(settings) if settings.voe_curve else None)

    def require_launch_settings(self) -> None:
        """Refuse to launch anything while a setting that launching needs is missing."""
        if not self.image_id:
            raise CloudConfigError(
                f"set DEFAULT_INSTANCE_ID to an AMI id of region {self.region} "
                "(a Linux with Python 3.11+ and its venv module)")
        if not self.key_name:
            raise CloudConfigError("set KEY_NAME to the name of an EC2 key pair of region "
                                   f"{self.region}")
        if not self.operator_cidr:
            raise CloudConfigError("set VOE_OPERATOR_CIDR to the addresses allowed to SSH to "
                                   "the fleet (your own address, e.g. 203.0.113.7/32)")
        self.require_key_file()

    def require_key_file(self) -> None:
        """Refuse to go on without a readable private key file."""
        if not self.key_file.is_file():
            raise CloudConfigError(
                f"SSH key file {self.key_file} does not exist (set VOE_SSH_KEY_FILE, or put "
                f"the private key of key pair {self.key_name or 'KEY_NAME'} there)")
        try:
            with open(self.key_file, "rb"):
                pass
        except OSError as error:
            raise CloudConfigError(
                f"cannot read SSH key file {self.key_file}: {error.strerror}") from None

    @property
    def group_name(self) -> str:
        """Name of the cluster's own security group."""
        return f"voe-cluster-{self.cluster}"


@dataclass
class Machine:
    """One instance of the cluster, as EC2 describes it."""

    instance_id: str
    role: str
    name: str
    state: str
    private_ip: str | None
    public_ip: str | None
    address: str | None
    launched: datetime | None
    tags: dict[str, str]

    @classmethod
    def from_instance(cls, instance: dict[str, Any]) -> Machine:
        """Build a machine from one instance of a DescribeInstances answer."""
        tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        return cls(instance_id=instance["InstanceId"], role=tags.get(TAG_ROLE, "?"),
                   name=tags.get("Name", instance["InstanceId"]),
                   state=instance["State"]["Name"],
                   private_ip=instance.get("PrivateIpAddress"),
                   public_ip=instance.get("PublicIpAddress"),
                   address=tags.get(TAG_ADDRESS), launched=instance.get("LaunchTime"),
                   tags=tags)

    @property
    def label(self) -> str:
        """How messages name the machine: its Name tag and instance id."""
        return f"{self.name} ({self.instance_id})"

    def ssh_address(self, which: str) -> str:
        """The address to reach over SSH: ``public`` (else private) or ``private``."""
        address = self.public_ip if which == "public" and self.public_ip else self.private_ip
        if not address:
            raise CloudError(f"{self.label} has no address yet (state {self.state})")
        return address

    def as_dict(self) -> dict[str, Any]:
        """The machine as JSON-ready data."""
        return {"name": self.name, "role": self.role, "instance_id": self.instance_id,
                "state": self.state, "private_ip": self.private_ip,
                "public_ip": self.public_ip, "address": self.address,
                "launched": self.launched.isoformat() if self.launched else None}


def machine_name(cluster: str, role: str, index: int = 0) -> str:
    """The Name tag of a machine: ``voe-master``, ``voe-sink``, ``voe-worker-3``."""
    return f"{cluster}-{role}-{index}" if role == "worker" else f"{cluster}-{role}"


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """Check ``NAME=VALUE`` pairs given to --set: known, not secret, not managed, valid."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CloudConfigError(f"--set {pair!r}: expected NAME=VALUE")
        try:
            setting = describe(name)
        except KeyError:
            raise CloudConfigError(f"--set {name}: no such setting (see voe settings)") from None
        if setting.secret or name in OPERATOR_ONLY:
            raise CloudConfigError(f"--set {name}: a setting of this machine, not of the "
                                   "fleet; it is never copied to the machines")
        if name in MANAGED_ON_MACHINES:
            raise CloudConfigError(f"--set {name}: voe writes it on the machines itself")
        if "\n" in value or "\r" in value:
            raise CloudConfigError(f"--set {name}: the value must be one line")
        try:
            setting.cast(value.strip())
        except ValueError:
            raise CloudConfigError(
                f"--set {name}={value!r}: expected {setting.expected}") from None
        values[name] = value.strip()
    return values

