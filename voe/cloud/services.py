"""How a role runs on a machine: a service that restarts it on failure, logging to ~/ROLE.log.

Where systemd runs (and the SSH user may use sudo), a ``voe-ROLE`` unit does it. Elsewhere
(containers, test hosts, minimal images) a small supervisor does what the original's
supervisor did: a shell loop started with ``setsid nohup`` that runs the role, appends
its output to ``~/ROLE.log`` and restarts it after a failure, giving up after a few quick
failures in a row like systemd's start limit. Its PID is in ``~/.voe/ROLE.pid``.
"""

from __future__ import annotations

import shlex

# Where the service files and PID files live on a machine (relative to the home).
SERVICE_DIR = ".voe"
# The venv voe is installed into (relative to the home).
VENV = "voe-env"
# Seconds between a failure and the restart.
RESTART_DELAY = 2
# Failures within QUICK_SECONDS of a start, in a row, after which the supervisor gives up.
QUICK_FAILURES = 5
QUICK_SECONDS = 30
# Seconds a stopping role gets before it is killed.
STOP_TIMEOUT = 15
# Seconds a freshly started role must stay up to count as running.
SETTLE_SECONDS = 1.5
# Open files a role may hold (LimitNOFILE): a master's HTTP port and sockets under many
# connections must not run out (a limit of a few hundred starved the ledger's database).
OPEN_FILES = 65536

# The commands that tell how the machine runs services.
PROBE_SYSTEMD = ("if [ -d /run/systemd/system ] && command -v systemctl >/dev/null "
                 "&& sudo -n true 2>/dev/null; then echo systemd; else echo supervisor; fi")


def log_name(role: str) -> str:
    """The role's log file in the home: ``master.log``, ``sink.log``, ``worker.log``."""
    return f"{role}.log"


def role_command(role: str) -> str:
    """The command line of the role, relative to the home."""
    return f"$HOME/{VENV}/bin/voe {role} --no-console"


def systemd_unit(role: str, user: str, home: str) -> str:
    """The ``voe-ROLE.service`` unit: restarts on failure, output appended to ~/ROLE.log,
    room for ``OPEN_FILES`` open files."""
    log = f"{home}/{log_name(role)}"
    return f"""[Unit]
Description=voe {role}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec={QUICK_SECONDS}
StartLimitBurst={QUICK_FAILURES}

[Service]
User={user}
WorkingDirectory={home}
ExecStart={home}/{VENV}/bin/voe {role} --no-console
Restart=on-failure
RestartSec={RESTART_DELAY}
TimeoutStopSec={STOP_TIMEOUT}
LimitNOFILE={OPEN_FILES}
StandardOutput=append:{log}
StandardError=append:{log}

[Install]
WantedBy=multi-user.target
"""


def systemd_start(role: str) -> str:
    """Install the unit written to ~/.voe and (re)start it."""
    unit = f"voe-{role}.service"
    return (f"sudo -n install -m 644 \"$HOME/{SERVICE_DIR}/{unit}\" /etc/systemd/system/{unit}"
            f" && sudo -n systemctl daemon-reload && sudo -n systemctl enable --quiet {unit}"
            f" && sudo -n systemctl restart {unit}")


def systemd_check(role: str) -> str:
    """Print ``running`` if the unit is active after the settle time, ``finished`` if it
    ended successfully (a --once master whose plan is done), else ``stopped``."""
    unit = f"voe-{role}.service"
    return (f"sleep {SETTLE_SECONDS}; if systemctl is-active --quiet {unit}; then echo running; "
            f"elif [ \"$(systemctl show -p Result --value {unit})\" = success ]; "
            "then echo finished; else echo stopped; fi")


def supervisor_script(role: str) -> str:
    """The supervisor of ``role``: run, log, restart on failure, give up when it keeps failing."""
    log = f'"$HOME/{log_name(role)}"'
    return f"""#!/bin/sh
# voe {role} service (written by voe cloud): restarts the {role} when it fails.
cd "$HOME" || exit 1
echo $$ > "$HOME/{SERVICE_DIR}/{role}.pid"
quick=0
while [ "$quick" -lt {QUICK_FAILURES} ]; do
  started=$(date +%s)
  {role_command(role)} >> {log} 2>&1
  status=$?
  if [ "$status" -eq 0 ]; then
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) voe service: {role} finished" >> {log}
    break
  fi
  if [ $(( $(date +%s) - started )) -lt {QUICK_SECONDS} ]; then quick=$((quick + 1)); \
else quick=1; fi
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) voe service: {role} exited with status $status;" \
"restarting in {RESTART_DELAY} s" >> {log}
  sleep {RESTART_DELAY}
done
if [ "$quick" -ge {QUICK_FAILURES} ]; then
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) voe service: {role} failed {QUICK_FAILURES} times" \
"in a row; giving up" >> {log}
fi
rm -f "$HOME/{SERVICE_DIR}/{role}.pid"
"""


def supervisor_stop(role: str) -> str:
    """Stop the role's supervisor and the role (its process group), bounded in time."""
    pidfile = f'"$HOME/{SERVICE_DIR}/{role}.pid"'
    ticks = STOP_TIMEOUT * 10
    return f"""pid=$(cat {pidfile} 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
&& grep -q {shlex.quote(role + '-service.sh')} "/proc/$pid/cmdline" 2>/dev/null; then
  kill -TERM -"$pid" 2>/dev/null
  i=0
  while kill -0 -"$pid" 2>/dev/null && [ "$i" -lt {ticks} ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL -"$pid" 2>/dev/null
fi
rm -f {pidfile}
"""


def supervisor_start(role: str) -> str:
    """Start the supervisor in its own session, detached from the SSH connection."""
    script = f'"$HOME/{SERVICE_DIR}/{role}-service.sh"'
    return f'cd "$HOME" && setsid nohup sh {script} </dev/null >/dev/null 2>&1 &'


def supervisor_check(role: str, log_offset: int) -> str:
    """Print ``running PID`` if the supervisor is up after the settle time, ``finished`` if
    the role ended successfully meanwhile, else ``stopped``."""
    pidfile = f'"$HOME/{SERVICE_DIR}/{role}.pid"'
    log = f'"$HOME/{log_name(role)}"'
    return f"""i=0
while [ ! -s {pidfile} ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
sleep {SETTLE_SECONDS}
pid=$(cat {pidfile} 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "running $pid"
elif tail -c +{log_offset + 1} {log} 2>/dev/null | grep -q "voe service: {role} finished"; then
  echo finished
else echo stopped; fi
"""
