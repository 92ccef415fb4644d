"""A lab for the fleet tests: moto as the EC2 API, OpenSSH's sshd as the machines.

Each machine is a network namespace with its own address in 198.19.N.0/24 (inside
198.18.0.0/15, the range reserved for network tests) on a bridge that lives in a
namespace of its own; this machine reaches them through one veth. Each runs sshd with
its own user and home. moto's instances get made-up addresses that are never
contacted: a watcher maps every new instance of a cluster, by its role tag, to one of
the lab's hosts in an OpenSSH client config file (``Host <moto private ip>`` ->
``HostName``, ``User``, ``Port``, ``IdentityFile``), the way a user maps names to
reachable hosts; ``Host *`` points at a lab address where nothing listens. That file
is the product's VOE_SSH_CONFIG. At the same moment the watcher writes the instance's
console output as cloud-init would print it on that host (its host key's fingerprint and
public key, from ``ssh-keygen``), which moto then returns (tests/motoconsole.py).
Where namespaces are not permitted, the hosts are sshd on distinct loopback addresses
instead (a warning says so).

Everything is started here and stopped by PID; every namespace, link and user made is
removed at the end.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tests.cluster import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"
REGION = "us-east-1"
KEY_PAIR = "voe-lab"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
WATCH_INTERVAL = 0.1


class LabUnavailable(Exception):
    """The lab cannot be built on this machine (not root, no sshd, ...)."""


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a setup command (ip, useradd, ssh-keygen) and return its result."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed: {result.stderr.strip()}")
    return result


def port_open(address: str, port: int) -> bool:
    """True when something accepts TCP connections at ``address:port`` (a lab address)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: by PID, never by name."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


class Moto:
    """moto's server mode on a loopback port: the EC2 API of the tests.

    Its console output is what the lab wrote in ``workdir/console`` for the instance.
    """

    def __init__(self, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"moto-{self.port}.log"
        self.console_dir = workdir / "console"
        self.console_dir.mkdir(exist_ok=True)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environment.update(env, VOE_LAB_CONSOLE_DIR=str(self.console_dir))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "motoconsole.py"), "-H", "127.0.0.1",
                 "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=environment, start_new_session=True)
        try:
            wait_for(self._ready, START_TIMEOUT, "moto to listen")
        except AssertionError:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-2000:]
        return port_open("127.0.0.1", self.port)

    def client(self):
        """A boto3 EC2 client of this moto."""
        return boto3.client("ec2", region_name=REGION, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        """Stop moto by its PID."""
        stop_process(self.process)


@dataclass
class Host:
    """One lab machine: an address, maybe an sshd with its own user and home."""

    name: str
    address: str
    port: int = 22
    namespace: str | None = None
    user: str | None = None
    uid: int | None = None
    home: Path | None = None
    host_key: Path | None = None
    sshd: subprocess.Popen | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    def file(self, relative: str) -> Path:
        """A path in this host's home."""
        assert self.home is not None
        return self.home / relative

    def read_env(self) -> dict[str, str]:
        """The host's ~/.env as a dict (comments skipped)."""
        values = {}
        for line in self.file(".env").read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                values[name.strip()] = value.strip()
        return values

    def service_pid(self, role: str) -> int | None:
        """The PID of the role's supervisor if it is alive, else None."""
        try:
            pid = int(self.file(f".voe/{role}.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


class Network:
    """Addresses for the lab's hosts: namespaces on a bridge, or loopback addresses."""

    def __init__(self, tag: str, force_loopback: bool) -> None:
        self.tag = tag
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.count = 0
        self.kind = "loopback" if force_loopback else self._try_namespaces()
        if self.kind == "loopback":
            self.prefix = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
            why = "forced by VOE_TEST_LAB_LOOPBACK" if force_loopback else "not permitted here"
            warnings.warn(f"network namespaces {why}: the lab's machines are sshd on loopback "
                          "addresses instead", stacklevel=2)
        self.root_address = self._next() if self.kind == "netns" else "127.0.0.1"

    def _try_namespaces(self) -> str:
        subnet = self._free_subnet()
        self.lan = f"vt{self.tag}lan"
        self.uplink = f"vt{self.tag}"
        try:
            sh("ip", "netns", "add", self.lan)
        except RuntimeError:
            return "loopback"
        self.namespaces.append(self.lan)
        self.prefix = subnet
        sh("ip", "-n", self.lan, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.lan, "link", "set", "br0", "up")
        sh("ip", "link", "add", self.uplink, "type", "veth", "peer", "name", "up0",
           "netns", self.lan)
        self.links.append(self.uplink)
        sh("ip", "-n", self.lan, "link", "set", "up0", "master", "br0", "up")
        return "netns"

    @staticmethod
    def _free_subnet() -> str:
        used = sh("ip", "-o", "-4", "addr").stdout + sh("ip", "-4", "route").stdout
        for _ in range(50):
            prefix = f"198.19.{random.randint(1, 254)}"
            if f"{prefix}." not in used:
                return prefix
        raise LabUnavailable("no free /24 in 198.19.0.0/16 for the lab")

    def _next(self) -> str:
        self.count += 1
        address = f"{self.prefix}.{self.count}"
        if self.kind == "netns" and self.count == 1:
            sh("ip", "addr", "add", f"{address}/24", "dev", self.uplink)
            sh("ip", "link", "set", self.uplink, "up")
        return address

    def add_host(self, name: str) -> Host:
        """A new host with its own address (and namespace, when namespaces work)."""
        address = self._next()
        if self.kind == "loopback":
            return Host(name, address, port=free_port())
        namespace = f"vt{self.tag}{name}"
        sh("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        peer = f"p{self.count}"
        sh("ip", "link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name",
           peer, "netns", self.lan)
        sh("ip", "-n", self.lan, "link", "set", peer, "master", "br0", "up")
        sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", namespace, "link", "set", "eth0", "up")
        sh("ip", "-n", namespace, "link", "set", "lo", "up")
        return Host(name, address, namespace=namespace)

    def routes_of(self, host: Host) -> str:
        """The host's routing table (to show it has no way out of the lab)."""
        if host.namespace is None:
            return ""
        return sh("ip", "-n", host.namespace, "-4", "route").stdout

    def exec_prefix(self, host: Host) -> list[str]:
        """How to run a command on ``host`` (in its namespace, or here)."""
        return ["ip", "netns", "exec", host.namespace] if host.namespace else []

    def remove(self) -> None:
        """Delete every link and namespace the lab made, and check they are gone."""
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        for namespace in reversed(self.namespaces):
            sh("ip", "netns", "del", namespace, check=False)
        names = set(self.namespaces)
        wait_for(lambda: not (names & set(sh("ip", "netns", "list").stdout.split())),
                 STOP_TIMEOUT, "the lab's namespaces to go")
        wait_for(lambda: all(sh("ip", "link", "show", link, check=False).returncode != 0
                             for link in self.links), STOP_TIMEOUT, "the lab's links to go")


def python_mounts(stash: Path) -> str:
    """Shell lines that let the lab's users run this Python when it lies under a closed folder.

    The test hosts share this machine's Python; if it lives under e.g. /root (mode 700),
    the sshd's own mount namespace gets a tmpfs over that folder holding bind mounts of
    just the Python, at the same paths. Nothing changes outside that namespace.
    """
    needed = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    blocked: dict[Path, list[Path]] = {}
    for path in needed:
        for folder in [*reversed(path.parents), path]:
            if not os.stat(folder).st_mode & 0o001:
                blocked.setdefault(folder, []).append(path)
                break
    lines = []
    for number, (folder, paths) in enumerate(blocked.items()):
        for index, path in enumerate(paths):
            keep = stash / f"{number}-{index}"
            lines += [f"mkdir -p {keep}", f"mount --bind {path} {keep}"]
        lines.append(f"mount -t tmpfs -o mode=755,size=1m tmpfs {folder}")
        for index, path in enumerate(paths):
            keep = stash / f"{number}-{index}"
            lines += [f"mkdir -p {path}", f"mount --bind {keep} {path}"]
    return "\n".join(lines)


class Lab:
    """moto, the lab's hosts, the SSH config that maps instances to them, and a watcher."""

    def __init__(self, force_loopback: bool = False) -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("the fleet lab needs root (users, namespaces, sshd)")
        if not Path(SSHD).exists():
            raise LabUnavailable(f"{SSHD} is missing (apt-get install openssh-server)")
        # Not under pytest's tmp folder: the hosts' users must be able to reach their homes.
        self.root = root = Path(tempfile.mkdtemp(prefix="voe-lab-"))
        root.chmod(0o755)
        self.tag = f"{os.getpid() % 10000:04d}{random.randint(0, 255):02x}"
        self.hosts: dict[str, Host] = {}
        self.users: list[str] = []
        self.plans: dict[tuple[str, str], list[Host]] = {}
        self.consoles: dict[tuple[str, str], str] = {}
        self.mapping: dict[str, tuple[str, Host]] = {}
        self.ssh_config = root / "ssh_config"
        self.key = root / "id_voe"
        self.moto: Moto | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self.network: Network | None = None
        try:
            self._build(force_loopback)
        except BaseException:
            self.close()
            raise

    def _build(self, force_loopback: bool) -> None:
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "voe-lab", "-f", str(self.key))
        (self.root / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (self.root / "authorized_keys").chmod(0o644)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.mounts = python_mounts(self.root / "stash")
        self.network = Network(self.tag, force_loopback)
        # On loopback the roles share this machine's ports: give them free ones there.
        defaults = {"VOE_JOBS_PORT": 1313, "VOE_CONTROL_PORT": 13131, "VOE_RESULTS_PORT": 13132}
        self.ports = {name: port if self.network.kind == "netns" else free_port()
                      for name, port in defaults.items()}
        for name in ("master", "sink", "w1", "w2", "broken"):
            self.hosts[name] = self._ssh_host(name)
        self.hosts["off"] = self.network.add_host("off")
        self.hosts["airline"] = self.network.add_host("air")
        self.hosts["broken"].home.chmod(0o555)
        self.moto = Moto(self.root)
        client = self.moto.client()
        client.import_key_pair(KeyName=KEY_PAIR,
                               PublicKeyMaterial=self.key.with_suffix(".pub").read_bytes())
        self.image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self._write_ssh_config()
        self._watcher = threading.Thread(target=self._watch, name="lab-watcher", daemon=True)
        self._watcher.start()

    def _ssh_host(self, name: str) -> Host:
        host = self.network.add_host(name)
        user = f"vt{self.tag}{name}"
        home = self.root / "homes" / user
        home.mkdir(parents=True)
        sh("useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-U", "-p", "*", user)
        self.users.append(user)
        uid = int(sh("id", "-u", user).stdout)
        gid = int(sh("id", "-g", user).stdout)
        os.chown(home, uid, gid)
        home.chmod(0o755)
        host.user, host.uid, host.home = user, uid, home
        folder = self.root / "hosts" / name
        folder.mkdir(parents=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key"))
        host.host_key = folder / "host_key.pub"
        config = folder / "sshd_config"
        config.write_text(f"""ListenAddress {host.address}:{host.port}
HostKey {folder / 'host_key'}
PidFile none
AuthorizedKeysFile {self.root / 'authorized_keys'}
AllowUsers {user}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
MaxStartups 50
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
        if self.network.kind == "netns":
            prefix = self.network.exec_prefix(host)
        else:
            prefix = ["unshare", "--mount", "--propagation", "slave"]
        script = f"set -e\n{self.mounts}\nexec {SSHD} -D -e -f {config}"
        with open(folder / "sshd.log", "wb") as log:
            host.sshd = subprocess.Popen([*prefix, "sh", "-c", script], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def listening() -> bool:
            if host.sshd.poll() is not None:
                raise LabUnavailable(
                    f"sshd did not start: {(folder / 'sshd.log').read_text()[-500:]}")
            return port_open(host.address, host.port)

        wait_for(listening, START_TIMEOUT, f"sshd of {name}")
        return host

    def assign(self, cluster: str, role: str, *hosts: str, console: str = "host key") -> None:
        """Map the next instances of ``cluster`` with ``role`` to these hosts, in launch order.

        ``console`` is what their console output shows: ``host key`` (the host's own, as
        cloud-init prints it), ``other key`` (another key's fingerprint: a machine that is
        not the one SSH reaches) or ``nothing`` (moto's boot log, no fingerprints).
        """
        assert console in ("host key", "other key", "nothing"), console
        with self._lock:
            self.plans[(cluster, role)] = [self.hosts[name] for name in hosts]
            self.consoles[(cluster, role)] = console

    def _watch(self) -> None:
        client = self.moto.client()
        while not self._stop.wait(WATCH_INTERVAL):
            try:
                reservations = client.describe_instances(Filters=[
                    {"Name": "tag-key", "Values": ["voe:cluster"]}])["Reservations"]
            except (BotoCoreError, ClientError) as error:
                print(f"lab watcher: {error}", file=sys.stderr)
                continue
            instances = sorted((i for r in reservations for i in r["Instances"]),
                               key=lambda i: (i["LaunchTime"], i.get("AmiLaunchIndex", 0)))
            changed = False
            with self._lock:
                for instance in instances:
                    if instance["InstanceId"] in self.mapping or not instance.get(
                            "PrivateIpAddress"):
                        continue
                    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                    plan = (tags.get("voe:cluster"), tags.get("voe:role"))
                    queue = self.plans.get(plan, [])
                    host = queue.pop(0) if queue else self.hosts["off"]
                    self._write_console(instance["InstanceId"], host,
                                        self.consoles.get(plan, "nothing"))
                    self.mapping[instance["InstanceId"]] = (instance["PrivateIpAddress"], host)
                    changed = True
                if changed:
                    self._write_ssh_config()

    def _write_console(self, instance_id: str, host: Host, console: str) -> None:
        """Write the console output cloud-init would print on ``host`` (see ``assign``)."""
        if console == "nothing" or host.host_key is None:
            return
        key = host.host_key if console == "host key" else self.key.with_suffix(".pub")
        fingerprint = sh("ssh-keygen", "-l", "-f", str(key)).stdout.strip()
        text = ("Cloud-init v. 24.1 running 'modules:final'\n"
                "ec2: #############################################################\n"
                "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
                f"ec2: {fingerprint}\n"
                "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n"
                "ec2: #############################################################\n"
                "-----BEGIN SSH HOST KEY KEYS-----\n"
                f"{key.read_text().strip()}\n"
                "-----END SSH HOST KEY KEYS-----\n"
                "Cloud-init v. 24.1 finished\n")
        temporary = self.moto.console_dir / f"{instance_id}.tmp"
        temporary.write_text(text)
        temporary.replace(self.moto.console_dir / instance_id)

    def _write_ssh_config(self) -> None:
        blocks = ["# The lab's hosts, by the made-up addresses moto gave the instances."]
        for private_ip, host in self.mapping.values():
            blocks.append(f"Host {private_ip}\n    HostName {host.address}\n"
                          f"    User {host.user or 'nobody'}\n    Port {host.port}\n"
                          f"    IdentityFile {self.key}")
        off = self.hosts.get("off")
        if off is not None:
            blocks.append(f"# Anything else goes to a lab address where nothing listens.\n"
                          f"Host *\n    HostName {off.address}\n    Port {off.port}")
        temporary = self.ssh_config.with_suffix(".tmp")
        temporary.write_text("\n\n".join(blocks) + "\n")
        temporary.replace(self.ssh_config)

    def host_of(self, instance_id: str) -> Host:
        """The lab host an instance was mapped to (waits briefly for the watcher)."""
        wait_for(lambda: instance_id in self.mapping, 5, f"a host for {instance_id}")
        return self.mapping[instance_id][1]

    def env(self, cluster: str, workdir: Path, **overrides: str) -> dict[str, str]:
        """The environment of a product command run against the lab."""
        from voe.settings import SETTINGS

        names = {setting.name for setting in SETTINGS}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and k not in names}
        env.update({
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-aws-credentials"),
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY": "testing", "AWS_SECRET_KEY": "testing",
            "REGION": REGION, "DEFAULT_INSTANCE_ID": self.image, "INSTANCE_SIZE": "t3.micro",
            "KEY_NAME": KEY_PAIR, "VOE_SSH_KEY_FILE": str(self.key),
            "VOE_SSH_CONFIG": str(self.ssh_config), "VOE_SSH_ADDRESS": "private",
            "VOE_SSH_KNOWN_HOSTS": str(self.root / "known_hosts"),
            "VOE_OPERATOR_CIDR": f"{self.network.root_address}/32",
            "VOE_SSH_TIMEOUT": "20", "VOE_REMOTE_PYTHON": sys.executable,
            "VOE_REMOTE_PIP_OPTIONS": "--no-index", "VOE_CLUSTER": cluster,
            "VOE_DATA_DIR": str(workdir), "PYTHONUNBUFFERED": "1",
        })
        env.update({name: str(port) for name, port in self.ports.items()})
        env.update(overrides)
        return env

    def start_airline(self, port: int = 8800) -> str:
        """Run the demo airline on the airline host; return its URL."""
        host = self.hosts["airline"]
        if host.namespace is None:
            port = free_port()
        log = open(self.root / "airline.log", "wb")
        with log:
            process = subprocess.Popen(
                [*self.network.exec_prefix(host), sys.executable, "-m", "voe", "demo-airline",
                 "--host", host.address, "--port", str(port)],
                cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        host.processes.append(process)
        wait_for(lambda: port_open(host.address, port), START_TIMEOUT, "the demo airline")
        return f"http://{host.address}:{port}"

    def _stop_services(self) -> None:
        """Stop what the product started on the hosts (by the PIDs it wrote), then strays."""
        for host in self.hosts.values():
            if host.home is None or not (host.home / ".voe").is_dir():
                continue
            for pidfile in (host.home / ".voe").glob("*.pid"):
                try:
                    os.killpg(int(pidfile.read_text().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    continue
        uids = {host.uid for host in self.hosts.values() if host.uid is not None}
        deadline = time.monotonic() + STOP_TIMEOUT
        while uids and time.monotonic() < deadline:
            left = [pid for pid in _pids() if _uid_of(pid) in uids]
            if not left:
                return
            if time.monotonic() > deadline - STOP_TIMEOUT / 2:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        continue
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every process, remove every namespace, link, user and file the lab made."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(STOP_TIMEOUT)
        self._stop_services()
        for host in self.hosts.values():
            for process in host.processes:
                stop_process(process)
            if host.sshd is not None:
                stop_process(host.sshd)
        if self.moto is not None:
            self.moto.stop()
        if self.network is not None:
            self.network.remove()
        for user in self.users:
            sh("userdel", user, check=False)
        shutil.rmtree(self.root)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
