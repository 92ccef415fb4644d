"""The EC2 fleet with real parts: moto's EC2 API, sshd machines in network namespaces.

One lab (tests/cloudlab.py) serves the module: the product runs as the user would run
it (`python setup_instances.py ...`, `voe cloud ...`, `python terminate.py`), with the
lab's SSH config as VOE_SSH_CONFIG mapping moto's made-up addresses to the lab's hosts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cloudlab import REPO, Lab, LabUnavailable, Moto, free_port, wait_for
from tests.cluster import SMALL_PLAN

COMMAND_TIMEOUT = 120


@pytest.fixture(scope="module")
def lab():
    try:
        built = Lab(force_loopback=os.environ.get("VOE_TEST_LAB_LOOPBACK") == "1")
    except LabUnavailable as error:
        pytest.skip(str(error))
    print(f"\nfleet lab: hosts on {built.network.kind} addresses "
          f"({', '.join(f'{n}={h.address}' for n, h in built.hosts.items())})")
    yield built
    built.close()


def product(lab: Lab, workdir: Path, cluster: str, *args: str, stdin: str | None = None,
            **env: str) -> subprocess.CompletedProcess:
    """Run `voe cloud ARGS`, or `python SCRIPT ARGS` when args[0] is a .py script."""
    if args[0].endswith(".py"):
        command = [sys.executable, str(REPO / args[0]), *args[1:]]
    else:
        command = [sys.executable, "-m", "voe", "cloud", *args]
    started = time.monotonic()
    result = subprocess.run(command, cwd=workdir, env=lab.env(cluster, workdir, **env),
                            input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if os.environ.get("VOE_TEST_VERBOSE"):
        print(result.stdout)
    print(f"{' '.join(args)} [{cluster}]: exit {result.returncode} after "
          f"{time.monotonic() - started:.1f} s")
    return result


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess, status: int,
                          *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def instances(lab: Lab, **tags: str) -> list[dict]:
    """moto's instances carrying these tags (any state)."""
    filters = [{"Name": f"tag:{key.replace('_', ':')}", "Values": [value]}
               for key, value in tags.items()]
    reservations = lab.moto.client().describe_instances(Filters=filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def tags_of(instance: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def step_times(output: str, name: str) -> dict[str, float]:
    """When the progress lines say machine ``name`` entered each step."""
    times = {}
    for seconds, step in re.findall(rf"\[\s*([\d.]+)s\] {re.escape(name)} i-\w+: (.+)", output):
        times.setdefault(step.strip(), float(seconds))
    return times


def test_fleet_is_launched_deployed_run_and_torn_down(lab, tmp_path):
    cluster = "main"
    lab.assign(cluster, "master", "master")
    lab.assign(cluster, "sink", "sink")
    lab.assign(cluster, "worker", "w1", "w2", "broken")
    airline = lab.start_airline()
    plan = tmp_path / "plan.toml"
    plan.write_text(SMALL_PLAN.format(max_attempts=3, lease_seconds=20, days=2,
                                      backend="demo", airports='["GRU", "REC", "SSA"]'))

    # The original's commands, in the original's order, with no address copied by hand.
    assert_ok(product(lab, tmp_path, cluster, "setup_instances.py", "master", "--plan",
                      str(plan)))
    assert_ok(product(lab, tmp_path, cluster, "up", "sink"))
    workers_run = product(lab, tmp_path, cluster, "setup_instances.py", "workers", "2",
                          "--set", f"VOE_DEMO_AIRLINE_URL={airline}")
    assert_ok(workers_run)
    # Every first host key was checked against the console output's fingerprints.
    assert "on first use" not in workers_run.stderr

    launched = instances(lab, voe_cluster=cluster)
    roles = sorted(tags_of(i)["voe:role"] for i in launched)
    assert roles == ["master", "sink", "worker", "worker"]
    assert all(i["State"]["Name"] == "running" for i in launched)
    roles_by_host = {}
    for instance in launched:
        host = lab.host_of(instance["InstanceId"])
        roles_by_host[host.name] = tags_of(instance)["voe:role"]
        # The machine's own address (seen over SSH) is recorded; moto's is never used.
        assert tags_of(instance)["voe:address"] == host.address
        assert instance["PrivateIpAddress"] != host.address
    assert roles_by_host == {"master": "master", "sink": "sink", "w1": "worker", "w2": "worker"}
    master, sink, w1, w2 = (lab.hosts[name] for name in ("master", "sink", "w1", "w2"))

    assert master.read_env()["VOE_BIND_IP"] == "0.0.0.0"
    assert master.read_env()["VOE_PLAN"] == "plan.toml"
    assert sink.read_env()["MASTER_IP"] == master.address
    assert sink.read_env()["VOE_BIND_IP"] == "0.0.0.0"
    for worker in (w1, w2):
        env = worker.read_env()
        assert (env["MASTER_IP"], env["SINK_IP"]) == (master.address, sink.address)
        assert env["VOE_DEMO_AIRLINE_URL"] == airline
        assert "VOE_BIND_IP" not in env
        assert worker.file(".env").stat().st_mode & 0o077 == 0
    for host, role in ((master, "master"), (sink, "sink"), (w1, "worker"), (w2, "worker")):
        assert host.file(f"{role}.log").exists(), role
        assert "AWS_SECRET_KEY" not in host.file(".env").read_text()
        if role != "master":
            assert host.service_pid(role), f"the {role} service on {host.name} is not running"

    # Each machine's step was shown, and the two workers were deployed at the same time.
    output = workers_run.stdout
    first, second = step_times(output, "main-worker-1"), step_times(output, "main-worker-2")
    for times in (first, second):
        assert {"waiting for SSH", "installing", "checking", "done"} <= set(times), output
    assert max(first["installing"], second["installing"]) < min(first["checking"],
                                                                  second["checking"]), output

    # The cluster's group opens voe's ports to its members only, and SSH to the operator.
    group = lab.moto.client().describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"voe-cluster-{cluster}"]}])[
        "SecurityGroups"][0]
    rules = {(rule["FromPort"], tuple(pair["GroupId"] for pair in rule["UserIdGroupPairs"]),
              tuple(r["CidrIp"] for r in rule["IpRanges"])) for rule in group["IpPermissions"]}
    for port in lab.ports.values():
        assert (port, (group["GroupId"],), ()) in rules
    assert (22, (), (f"{lab.network.root_address}/32",)) in rules

    # The plan runs through the fleet: the demo airline's fares end up in the sink's store.
    wait_for(lambda: "cycle 1 finished: 12 done, 0 failed" in master.file(
        "master.log").read_text(), 60, "the fleet to collect the plan")
    with sqlite3.connect(f"file:{sink.file('fares.db')}?mode=ro", uri=True) as store:
        results = store.execute("SELECT count(*) FROM results").fetchone()[0]
        fares = store.execute("SELECT count(*) FROM fares").fetchone()[0]
    assert results == 12 and fares > 0

    # Encrypted: each machine got only its role's keys over SSH, private to its user.
    assert "CURVE is on" in master.file("master.log").read_text()
    assert master.file("keys/master.key_secret").stat().st_mode & 0o077 == 0
    assert not master.file("keys/sink.key_secret").exists()
    assert not w1.file("keys/master.key_secret").exists()
    assert w1.file("keys/client.key_secret").stat().st_mode & 0o077 == 0
    assert sink.file("keys/authorized/client.key").exists()
    # Each worker runs with its own client key, admitted on the master and the sink.
    worker_ids = {lab.host_of(i["InstanceId"]).name: i["InstanceId"] for i in launched
                  if tags_of(i)["voe:role"] == "worker"}
    for worker in (w1, w2):
        name = f"worker-{worker_ids[worker.name]}"
        assert worker.file("keys/client.key_secret").read_text() == (
            tmp_path / "keys" / f"{name}.key_secret").read_text()
        for server in (master, sink):
            assert server.file(f"keys/authorized/{name}.key").exists(), (server.name, name)
    assert w1.file("keys/client.key").read_text() != w2.file("keys/client.key").read_text()
    assert "admitted them on main-master" in workers_run.stdout

    # A role that dies is restarted by its service.
    supervisor = w1.service_pid("worker")
    children = _children(supervisor)
    assert children
    os.kill(children[0], signal.SIGKILL)
    wait_for(lambda: [p for p in _children(supervisor) if p not in children], 15,
             "the worker to be restarted")
    assert "voe service: worker exited with status 137; restarting" in w1.file(
        "worker.log").read_text()

    # Running again reuses the master and the sink: nothing is doubled.
    again = product(lab, tmp_path, cluster, "setup_instances.py", "master")
    assert_ok(again)
    assert "reusing the master" in again.stdout

    # A machine whose SSH host key changed is refused before any login.
    known_hosts = lab.root / "known_hosts"
    remembered = known_hosts.read_text()
    master_id = next(i["InstanceId"] for i in launched if tags_of(i)["voe:role"] == "master")
    impostor = " ".join(lab.key.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text("".join(
        f"{master_id} {impostor}\n" if line.startswith(f"{master_id} ") else line + "\n"
        for line in remembered.splitlines()))
    assert_one_line_error(product(lab, tmp_path, cluster, "up", "master"), 1,
                          "host key", master_id, "not the one voe saw first")
    known_hosts.write_text(remembered)
    live = [i for i in instances(lab, voe_cluster=cluster) if i["State"]["Name"] == "running"]
    assert sorted(tags_of(i)["voe:role"] for i in live) == ["master", "sink", "worker", "worker"]

    # A deploy step failing on one worker: the others finish, the summary says which and why.
    partial = product(lab, tmp_path, cluster, "up", "workers", "3")
    line = assert_one_line_error(partial, 1, "1 of 3 machine(s) failed", "main-worker-3",
                                 "uploading", "Permission denied", "still running")
    assert "main-worker-1" not in line and "main-worker-2" not in line
    assert partial.stdout.count("worker running") == 2, partial.stdout
    assert w1.service_pid("worker") and w2.service_pid("worker")
    assert w1.read_env()["VOE_DEMO_AIRLINE_URL"] == airline   # kept across re-deploys

    status = product(lab, tmp_path, cluster, "status", "--json")
    assert_ok(status)
    machines = json.loads(status.stdout)["machines"]
    assert sorted(m["role"] for m in machines) == ["master", "sink", "worker", "worker",
                                                   "worker"]
    assert {m["name"]: m["address"] for m in machines}["main-master"] == master.address

    # Teardown ends exactly this cluster's instances.
    client = lab.moto.client()
    untagged = client.run_instances(ImageId=lab.image, MinCount=1, MaxCount=1)[
        "Instances"][0]["InstanceId"]
    other = client.run_instances(
        ImageId=lab.image, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "voe:cluster", "Value": "other"}, {"Key": "voe:role", "Value": "master"}]}],
    )["Instances"][0]["InstanceId"]
    refused = product(lab, tmp_path, cluster, "terminate.py")
    assert_one_line_error(refused, 2, "--yes")
    assert all(i["State"]["Name"] == "running" for i in instances(lab, voe_cluster=cluster))

    down = product(lab, tmp_path, cluster, "terminate.py", "--yes")
    assert_ok(down)
    mine = instances(lab, voe_cluster=cluster)
    assert len(mine) == 5 and all(i["State"]["Name"] == "terminated" for i in mine)
    for survivor in (untagged, other):
        state = client.describe_instances(InstanceIds=[survivor])["Reservations"][0][
            "Instances"][0]["State"]["Name"]
        assert state == "running", survivor
    assert not client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"voe-cluster-{cluster}"]}])["SecurityGroups"]
    empty = product(lab, tmp_path, cluster, "status")
    assert_ok(empty)
    assert "has no instances" in empty.stdout


def _children(pid: int | None) -> list[int]:
    """The PIDs whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if pid is not None and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_ssh_that_never_comes_up_fails_in_bounded_time(lab, tmp_path):
    lab.assign("nossh", "master", "off")
    result = product(lab, tmp_path, "nossh", "up", "master", VOE_SSH_TIMEOUT="3")
    line = assert_one_line_error(result, 1, "1 of 1 machine(s) failed", "nossh-master",
                                 "waiting for SSH", "did not come up within 3 s",
                                 "still running")
    assert "refused" in line.lower()
    assert [i["State"]["Name"] for i in instances(lab, voe_cluster="nossh")] == ["running"]
    assert_ok(product(lab, tmp_path, "nossh", "down", "--yes"))


def ingress(lab: Lab, cluster: str) -> tuple[str, set[tuple]]:
    """The cluster group's id and its rules as (port, member groups, CIDRs) triples."""
    group = lab.moto.client().describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"voe-cluster-{cluster}"]}])[
        "SecurityGroups"][0]
    return group["GroupId"], {
        (rule["FromPort"], tuple(pair["GroupId"] for pair in rule["UserIdGroupPairs"]),
         tuple(r["CidrIp"] for r in rule["IpRanges"])) for rule in group["IpPermissions"]}


def test_a_changed_operator_cidr_takes_ssh_away_from_the_old_one(lab, tmp_path):
    cluster = "cidr"
    lab.assign(cluster, "master", "off")    # SSH never answers: the group is what counts
    first = product(lab, tmp_path, cluster, "up", "master", VOE_SSH_TIMEOUT="1",
                    VOE_OPERATOR_CIDR="203.0.113.7/32")
    assert first.returncode == 1 and "Traceback" not in first.stdout + first.stderr
    group_id, before = ingress(lab, cluster)
    cluster_rules = {(port, (group_id,), ()) for port in lab.ports.values()}
    assert before == cluster_rules | {(22, (), ("203.0.113.7/32",))}

    # Rules someone added by hand that also let SSH in go too; others stay.
    lab.moto.client().authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]},
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 1024,
         "IpRanges": [{"CidrIp": "192.0.2.0/24"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}])
    second = product(lab, tmp_path, cluster, "up", "master", VOE_SSH_TIMEOUT="1",
                     VOE_OPERATOR_CIDR="198.51.100.0/24")
    assert second.returncode == 1 and "Traceback" not in second.stdout + second.stderr
    revoked = re.search(r"revoked SSH access from (.+) in security group", second.stdout)
    assert revoked, second.stdout
    assert sorted(revoked.group(1).split(", ")) == ["192.0.2.0/24", "2001:db8::/32",
                                                     "203.0.113.7/32"]
    assert ingress(lab, cluster) == (group_id, cluster_rules | {
        (22, (), ("198.51.100.0/24",)), (443, (), ("192.0.2.0/24",))})
    assert_ok(product(lab, tmp_path, cluster, "down", "--yes"))


def fingerprint(public_key: Path) -> str:
    """The SHA256 fingerprint of a public key file, as ssh-keygen prints it."""
    line = subprocess.run(["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    return line.split()[1]


def test_a_host_key_the_console_does_not_list_is_refused_before_login(lab, tmp_path):
    cluster = "impostor"
    host = lab.hosts["w2"]
    sshd_log = lab.root / "hosts" / "w2" / "sshd.log"
    seen = sshd_log.read_text()
    lab.assign(cluster, "master", "w2", console="other key")
    result = product(lab, tmp_path, cluster, "up", "master")
    instance = instances(lab, voe_cluster=cluster)[0]["InstanceId"]
    line = assert_one_line_error(result, 1, "1 of 1 machine(s) failed", instance,
                                 "waiting for SSH", "not one its EC2 console output lists",
                                 "nothing was sent")
    presented, listed = fingerprint(host.host_key), fingerprint(lab.key.with_suffix(".pub"))
    assert f"it presented {presented}, the console lists {listed}" in line
    # sshd saw the connection end before any login: no command, no file, no key reached it.
    appended = sshd_log.read_text()[len(seen):]
    assert "Connection from" in appended and "[preauth]" in appended, appended
    assert "Accepted" not in appended and "session opened" not in appended, appended
    known_hosts = lab.root / "known_hosts"
    assert not known_hosts.exists() or instance not in known_hosts.read_text()
    assert_ok(product(lab, tmp_path, cluster, "down", "--yes"))


def test_without_fingerprints_in_the_console_the_first_key_is_trusted_with_a_warning(
        lab, tmp_path):
    cluster = "unlisted"
    host = lab.hosts["w2"]
    lab.assign(cluster, "master", "w2", console="nothing")
    # A Python that is not there stops the deploy right after the login it needs.
    result = product(lab, tmp_path, cluster, "up", "master", VOE_SSH_CONSOLE_WAIT="2",
                     VOE_REMOTE_PYTHON="/nonexistent/python3")
    instance = instances(lab, voe_cluster=cluster)[0]["InstanceId"]
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "at probing: no usable /nonexistent/python3" in result.stderr
    assert (f"warning: the EC2 console output lists no SSH host key fingerprints 2 s after "
            f"SSH answered (VOE_SSH_CONSOLE_WAIT); trusting the SSH host key of "
            f"{cluster}-master ({instance}) on first use: {fingerprint(host.host_key)}"
            ) in result.stderr
    known = (lab.root / "known_hosts").read_text()
    assert f"{instance} {' '.join(host.host_key.read_text().split()[:2])}" in known
    assert_ok(product(lab, tmp_path, cluster, "down", "--yes"))


@pytest.mark.parametrize("env, fragments", [
    ({"AWS_ACCESS_KEY": "", "AWS_SECRET_KEY": ""}, ["no AWS credentials"]),
    ({"VOE_SSH_KEY_FILE": "/nonexistent/voe-key.pem"}, ["/nonexistent/voe-key.pem",
                                                         "does not exist"]),
    ({"DEFAULT_INSTANCE_ID": "ami-0000000000dead"}, ["AMI ami-0000000000dead does not exist",
                                                     "DEFAULT_INSTANCE_ID"]),
    ({"KEY_NAME": "no-such-pair", "VOE_SSH_KEY_FILE": ""},
     ["no-such-pair.pem", "does not exist"]),
    ({"VOE_OPERATOR_CIDR": ""}, ["VOE_OPERATOR_CIDR"]),
    ({"VOE_OPERATOR_CIDR": "everyone"}, ["VOE_OPERATOR_CIDR", "IPv4 network"]),
], ids=["no-credentials", "missing-key-file", "unknown-ami", "default-key-file-missing",
        "no-operator-cidr", "bad-operator-cidr"])
def test_configuration_mistakes_launch_nothing(lab, tmp_path, env, fragments):
    cluster = "mistakes"
    result = product(lab, tmp_path, cluster, "up", "master", **env)
    assert_one_line_error(result, 2, *fragments)
    assert instances(lab, voe_cluster=cluster) == []


def test_missing_key_pair_on_ec2_launches_nothing(lab, tmp_path):
    result = product(lab, tmp_path, "nopair", "up", "master", KEY_NAME="not-in-ec2")
    assert_one_line_error(result, 2, "key pair 'not-in-ec2' does not exist", "KEY_NAME")
    assert instances(lab, voe_cluster="nopair") == []


@pytest.mark.parametrize("args, fragments", [
    (["up", "sink"], ["no running master", "voe cloud up master"]),
    (["up", "workers", "2"], ["no running master"]),
    (["up", "master", "2"], ["one master"]),
    (["up", "workers", "1", "--plan", "plan.toml"], ["--plan is for the master"]),
    (["up", "master", "--set", "NO_SUCH=1"], ["NO_SUCH", "no such setting"]),
    (["up", "master", "--set", "AWS_SECRET_KEY=x"], ["AWS_SECRET_KEY", "never copied"]),
    (["up", "master", "--set", "MASTER_IP=1.2.3.4"], ["MASTER_IP", "voe writes it"]),
    (["up", "master", "--set", "VOE_CONCURRENCY=many"], ["VOE_CONCURRENCY", "whole number"]),
    (["up", "master", "--plan", "missing.toml"], ["missing.toml"]),
])
def test_usage_mistakes_are_one_line(lab, tmp_path, args, fragments):
    assert_one_line_error(product(lab, tmp_path, "usage", *args), 2, *fragments)
    assert instances(lab, voe_cluster="usage") == []


def test_rejected_credentials(lab, tmp_path):
    strict = Moto(lab.root, INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        result = product(lab, tmp_path, "creds", "status", AWS_ENDPOINT_URL=strict.url,
                         AWS_ACCESS_KEY="AKIAEXAMPLEEXAMPLE", AWS_SECRET_KEY="s3cret-Value")
    finally:
        strict.stop()
    assert_one_line_error(result, 2, "AWS rejected the credentials", "AuthFailure")
    assert "s3cret-Value" not in result.stdout + result.stderr


def test_unreachable_endpoint(lab, tmp_path):
    result = product(lab, tmp_path, "gone", "status", AWS_MAX_ATTEMPTS="2",
                     AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(result, 1, "cannot reach the EC2 API")


def test_down_asks_at_a_terminal_and_only_yes_terminates(lab, tmp_path):
    cluster = "asks"
    instance = lab.moto.client().run_instances(
        ImageId=lab.image, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "voe:cluster", "Value": cluster}, {"Key": "voe:role", "Value": "worker"}]}],
    )["Instances"][0]["InstanceId"]
    lab.assign(cluster, "worker")
    for answer, status, state in (("n", 1, "running"), ("y", 0, "terminated")):
        output, code = _at_terminal(lab, tmp_path, cluster, ["down"], answer)
        assert code == status, output
        assert "Terminate these 1 instance(s) of cluster asks?" in output
        assert instance in output and "Traceback" not in output
        assert [i["State"]["Name"] for i in instances(lab, voe_cluster=cluster)] == [state]


def _at_terminal(lab: Lab, workdir: Path, cluster: str, args: list[str],
                 answer: str) -> tuple[str, int]:
    """Run `voe cloud ARGS` on a pseudo-terminal, answer its question, return output, status."""
    import pty
    import select

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "voe", "cloud", *args], cwd=workdir,
                               env=lab.env(cluster, workdir), stdin=terminal, stdout=terminal,
                               stderr=terminal, start_new_session=True)
    os.close(terminal)
    output, answered = b"", False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:
                    break
                output += chunk
                if not answered and b"[y/N]" in output:
                    os.write(controller, answer.encode() + b"\n")
                    answered = True
            elif process.poll() is not None:
                break
        code = process.wait(10)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return output.decode("utf-8", "replace"), code
