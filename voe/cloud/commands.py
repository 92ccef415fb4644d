"""``voe cloud up|down|status`` (and the original's scripts): the fleet's commands.

``up`` launches only what is missing (a master and a sink are reused, never doubled;
``workers N`` brings the cluster to N workers), deploys every machine of the role in
parallel, and says which failed and why. ``down`` terminates only instances tagged with
this cluster, after showing them. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
from rich.console import Console
from rich.table import Table

from voe import keys
from voe.cloud.cluster import (
    CloudConfigError,
    CloudError,
    CloudSettings,
    Machine,
    machine_name,
    parse_sets,
)
from voe.cloud.deploy import Deployer, DeployResult, admit, worker_key_name
from voe.cloud.ec2 import Fleet
from voe.cloud.package import deploy_package
from voe.cloud.progress import Board
from voe.cloud.ssh import HostKeys, load_key
from voe.settings import Settings, SettingsError, load

# Most machines deployed at once (threads; each mostly waits on the network).
MAX_PARALLEL = 16
# States listed by status and down (terminated instances are history, not machines).
SHOWN_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def run(prog: str, action: Callable[[], int]) -> int:
    """Run a fleet command; a ``CloudError`` or bad setting is one line on stderr."""
    try:
        return action()
    except CloudError as error:
        _error(prog, str(error))
        return error.exit_status
    except SettingsError as error:
        _error(prog, str(error))
        return CloudConfigError.exit_status
    except KeyboardInterrupt:
        _error(prog, "interrupted; `voe cloud status` shows what exists now")
        return 130


def dispatch(args: argparse.Namespace, prog: str) -> int:
    """Run the ``voe cloud`` action that ``args`` names."""
    if args.cloud_command == "up":
        return run(prog, lambda: up(load(), args.role, args.count, args.plan, args.set))
    if args.cloud_command == "down":
        return run(prog, lambda: down(load(), args.yes))
    return run(prog, lambda: status(load(), args.json))


def up(settings: Settings, role: str, count: int | None, plan: str | None,
       sets: list[str], console: Console | None = None) -> int:
    """Launch what the role lacks, deploy every machine of the role, start the services."""
    console = console or _console()
    role = "worker" if role == "workers" else role
    if role != "worker" and count not in (None, 1):
        raise CloudConfigError(f"a cluster has one {role}; a count is only for workers")
    if plan is not None and role != "master":
        raise CloudConfigError("--plan is for the master")
    config = CloudSettings.from_settings(settings)
    extra = parse_sets(sets)
    plan_path = _checked_plan(plan) if plan else None
    config.require_launch_settings()
    load_key(config.key_file, config.key_pass)
    if config.keys is not None:
        created = keys.init(config.keys)
        if created:
            console.print(f"made the cluster's CURVE keys in {config.keys}: {', '.join(created)}")
    fleet = Fleet(config)
    host_keys = HostKeys(config.known_hosts, console=fleet.console_output)
    if config.paramiko_debug:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        paramiko.util.log_to_file(str(config.data_dir / "paramiko.log"))
    with tempfile.TemporaryDirectory(prefix="voe-package-") as scratch:
        package = deploy_package(config.deploy_package, Path(scratch))
        machines = fleet.machines()
        values = _machine_values(config, role, machines) | extra
        existing, names = _plan_launch(config, role, count or 1, machines, console)
        if names:
            fleet.check_launch()
        group_id, revoked = fleet.ensure_security_group(list(config.ports.values()))
        if revoked:
            console.print(f"revoked SSH access from {', '.join(revoked)} in security group "
                          f"{config.group_name}: only {config.operator_cidr} "
                          "(VOE_OPERATOR_CIDR) may SSH in")
        launched: list[Machine] = []
        if names:
            console.print(f"launching {len(names)} {role} instance(s) of cluster "
                          f"{config.cluster} ({config.instance_type}, {config.image_id})")
            launched = fleet.launch(role, names, group_id)
            ids = ", ".join(machine.instance_id for machine in launched)
            try:
                launched = fleet.wait_running(launched)
            except CloudError as error:
                raise CloudError(f"{error} (launched {ids}; `voe cloud down` ends "
                                 "them)") from None
            console.print(f"launched {ids}")
        if role == "worker" and config.keys is not None:
            _worker_keys(config, host_keys, existing + launched, machines, console)
        results = _deploy_all(config, package, host_keys, existing + launched, values,
                              plan_path, console)
    for result in results:
        if result.address and result.address != result.machine.address:
            fleet.set_address(result.machine, result.address)
    return _summary(config, role, results, console)


def down(settings: Settings, yes: bool, console: Console | None = None) -> int:
    """Show this cluster's instances, confirm, terminate them, delete the cluster's group."""
    console = console or _console()
    config = CloudSettings.from_settings(settings)
    fleet = Fleet(config)
    machines = fleet.machines(SHOWN_STATES)
    if not machines:
        console.print(f"cluster {config.cluster} has no instances; nothing to terminate")
        _delete_group(fleet, console)
        return 0
    console.print(_machine_table(f"cluster {config.cluster} ({config.region})", machines))
    if not yes:
        if not sys.stdin.isatty():
            raise CloudConfigError("not at a terminal to confirm: pass --yes to terminate "
                                   f"these {len(machines)} instance(s)")
        answer = input(f"Terminate these {len(machines)} instance(s) of cluster "
                       f"{config.cluster}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("nothing terminated")
            return 1
    ids = fleet.terminate(machines)
    console.print(f"terminating {len(ids)} instance(s): {', '.join(ids)}")
    HostKeys(config.known_hosts).forget(ids)
    if fleet.wait_terminated(ids):
        _delete_group(fleet, console)
    else:
        console.print(f"some instances are still shutting down; security group "
                      f"{config.group_name} is kept (run voe cloud down again to delete it)")
    return 0


def status(settings: Settings, as_json: bool, console: Console | None = None) -> int:
    """List this cluster's machines with their role, state and addresses."""
    console = console or _console()
    config = CloudSettings.from_settings(settings)
    machines = Fleet(config).machines(SHOWN_STATES)
    if as_json:
        print(json.dumps({"cluster": config.cluster, "region": config.region,
                          "machines": [machine.as_dict() for machine in machines]}, indent=2))
        return 0
    if not machines:
        console.print(f"cluster {config.cluster} has no instances in {config.region} "
                      "(voe cloud up master starts one)")
        return 0
    console.print(_machine_table(f"cluster {config.cluster} ({config.region})", machines))
    return 0


def _checked_plan(plan: str) -> Path:
    from voe.master.plan import PlanError, load_plan

    try:
        load_plan(plan)
    except PlanError as error:
        raise CloudConfigError(str(error)) from None
    return Path(plan)


def _machine_values(config: CloudSettings, role: str, machines: list[Machine]
                    ) -> dict[str, str]:
    """What voe writes into the .env of a machine of ``role``, from the cluster's tags."""
    values: dict[str, str] = {}
    if role in ("sink", "worker"):
        values["MASTER_IP"] = _address(config, machines, "master")
    if role == "worker":
        values["SINK_IP"] = _address(config, machines, "sink")
    if role == "master":
        sinks = [m for m in machines if m.role == "sink" and m.address]
        if sinks:
            values["SINK_IP"] = sinks[0].address or ""
    if role in ("master", "sink"):
        values["VOE_BIND_IP"] = "0.0.0.0"
    values.update({name: str(port) for name, port in config.ports.items()})
    return values


def _address(config: CloudSettings, machines: list[Machine], role: str) -> str:
    found = [m for m in machines if m.role == role and m.state in ("pending", "running")]
    if not found:
        raise CloudConfigError(f"cluster {config.cluster} has no running {role} yet: run "
                               f"`voe cloud up {role}` first")
    if not found[0].address:
        raise CloudConfigError(f"the {role} {found[0].label} was never deployed (no "
                               f"voe:address tag): run `voe cloud up {role}` again first")
    return found[0].address


def _plan_launch(config: CloudSettings, role: str, count: int, machines: list[Machine],
                 console: Console) -> tuple[list[Machine], list[str]]:
    """The machines of ``role`` to reuse, and the names of those to launch."""
    mine = [m for m in machines if m.role == role]
    stopped = [m for m in mine if m.state in ("stopping", "stopped")]
    live = [m for m in mine if m.state in ("pending", "running")]
    if role != "worker":
        if live:
            if len(live) > 1:
                console.print(f"warning: cluster {config.cluster} has {len(live)} {role}s; "
                              f"using the oldest, {live[0].label}")
            console.print(f"reusing the {role} {live[0].label}")
            return live[:1], []
        if stopped:
            raise CloudConfigError(f"the {role} {stopped[0].label} is stopped: start it again "
                                   "(EC2 console) or end the cluster with voe cloud down")
        return [], [machine_name(config.cluster, role)]
    if stopped:
        console.print(f"ignoring {len(stopped)} stopped worker(s): "
                      + ", ".join(m.label for m in stopped))
    missing = count - len(live)
    if live and missing > 0:
        console.print(f"reusing {len(live)} worker(s), launching {missing} more")
    elif live:
        console.print(f"reusing the cluster's {len(live)} worker(s); none launched, none "
                      "terminated")
    used = {int(match.group(1)) for m in mine
            if (match := re.fullmatch(rf"{re.escape(config.cluster)}-worker-(\d+)", m.name))}
    names, index = [], 1
    while len(names) < missing:
        if index not in used:
            names.append(machine_name(config.cluster, "worker", index))
        index += 1
    return live, names


def _worker_keys(config: CloudSettings, host_keys: HostKeys, workers: list[Machine],
                 machines: list[Machine], console: Console) -> None:
    """Give each worker its own client key, and admit the new ones on the master and sink.

    A server that cannot be reached now gets them with its next deploy (its bundle
    holds every admitted key); until then it refuses those workers, and says so.
    """
    assert config.keys is not None
    made = [worker_key_name(machine) for machine in workers
            if keys.ensure_client(config.keys, worker_key_name(machine))]
    if not made:
        return
    console.print(f"made {len(made)} worker key(s): {', '.join(made)}")
    for server in machines:
        if server.role not in keys.SERVERS or server.state != "running":
            continue
        try:
            admit(config, host_keys, server, made)
        except (CloudError, OSError, EOFError, paramiko.SSHException) as error:
            console.print(f"[yellow]could not admit the new worker keys on {server.label}: "
                          f"{error}; it refuses those workers until `voe cloud up "
                          f"{server.role}` deploys it again[/yellow]")
        else:
            console.print(f"admitted them on {server.label}")


def _deploy_all(config: CloudSettings, package: Path, host_keys: HostKeys,
                targets: list[Machine], values: dict[str, str], plan: Path | None,
                console: Console) -> list[DeployResult]:
    """Deploy to every target at once (bounded threads), showing each one's step."""
    console.print(f"deploying {package.name} to {len(targets)} machine(s)")
    with Board(console, targets) as board:
        deployer = Deployer(config, package, host_keys, board.update)
        with ThreadPoolExecutor(max_workers=min(len(targets), MAX_PARALLEL),
                                thread_name_prefix="deploy") as pool:
            futures = [pool.submit(deployer.deploy, machine, values, plan)
                       for machine in targets]
            return [future.result() for future in futures]


def _summary(config: CloudSettings, role: str, results: list[DeployResult],
             console: Console) -> int:
    """Print what every machine ended as; one error line if some failed."""
    table = Table(title=f"cluster {config.cluster}: {role}", title_justify="left")
    for column in ("machine", "instance", "address", "result"):
        table.add_column(column, no_wrap=column == "instance", min_width=len(column))
    for result in results:
        outcome = result.message if result.ok else f"FAILED at {result.step}: {result.message}"
        table.add_row(result.machine.name, result.machine.instance_id,
                      result.address or result.machine.private_ip or "-", outcome)
    console.print(table)
    failed = [result for result in results if not result.ok]
    if not failed:
        logs = ", ".join(sorted({f"~/{result.machine.role}.log" for result in results}))
        console.print(f"{len(results)} machine(s) ready; follow them with: ssh MACHINE "
                      f"tail -f {logs}")
        return 0
    reasons = "; ".join(f"{r.machine.label} at {r.step}: {r.message}" for r in failed)
    raise CloudError(f"{len(failed)} of {len(results)} machine(s) failed: {reasons}; still "
                     "running: fix the cause and run the same command again, or voe cloud down")


def _machine_table(title: str, machines: list[Machine]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("machine", "role", "instance", "state", "private ip", "public ip",
                   "voe address"):
        table.add_column(column, no_wrap=column == "instance", min_width=len(column))
    for m in machines:
        table.add_row(m.name, m.role, m.instance_id, m.state, m.private_ip or "-",
                      m.public_ip or "-", m.address or "-")
    return table


def _delete_group(fleet: Fleet, console: Console) -> None:
    try:
        group_id = fleet.delete_security_group()
    except CloudError as error:
        console.print(f"security group {fleet.config.group_name} kept: {error}")
        return
    if group_id:
        console.print(f"deleted security group {fleet.config.group_name} ({group_id})")


def _console() -> Console:
    """A console on stdout; wide when it is not a terminal, so log lines stay whole."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    return console


def _error(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
