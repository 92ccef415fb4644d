"""The fleet tooling's pieces that need no EC2 and no SSH: package, .env, SSH config, keys."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import paramiko
import pytest

from voe.cloud import fingerprints, services
from voe.cloud.cluster import CloudConfigError, CloudSettings, parse_sets
from voe.cloud.deploy import env_file
from voe.cloud.package import build_wheel, deploy_package, source_root
from voe.cloud.ssh import HostKeys, resolve
from voe.settings import SETTINGS, load


def cloud_settings(tmp_path: Path, **values: str) -> CloudSettings:
    """Fleet settings from the defaults plus ``values`` (the environment is ignored)."""
    env = {setting.name: os.environ.pop(setting.name) for setting in SETTINGS
           if setting.name in os.environ}
    try:
        os.environ.update(values)
        return CloudSettings.from_settings(load(tmp_path / "no.env"))
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update(env)


def test_wheel_of_the_checkout_installs_voe_with_its_metadata(tmp_path):
    wheel = build_wheel(source_root(), tmp_path / "a")
    again = build_wheel(source_root(), tmp_path / "b")
    assert wheel.name == again.name and wheel.read_bytes() == again.read_bytes()
    assert wheel.name.startswith("voe-0.") and "+g" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert {"voe/cli/main.py", "voe/cloud/deploy.py", "voe/demo/plans/demo.toml"} <= set(names)
        assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
        dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert "Requires-Dist: paramiko" in metadata and "Requires-Dist: boto3" in metadata
        points = archive.read(f"{dist_info}/entry_points.txt").decode()
        assert "voe = voe.cli.main:main" in points
        # The demo's backends and commands plug in by entry point: a machine needs them too.
        assert "[voe.backends]\ndemo = voe.demo.backends.page:DemoBackend" in points
        assert "[voe.commands]\ndemo = voe.demo.commands:add_commands" in points
        for line in archive.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("RECORD"):
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data), name


def test_named_package_must_exist_and_be_a_package(tmp_path):
    with pytest.raises(CloudConfigError, match="does not exist"):
        deploy_package(str(tmp_path / "voe.whl"), tmp_path)
    (tmp_path / "voe.txt").write_text("x")
    with pytest.raises(CloudConfigError, match="wheel"):
        deploy_package(str(tmp_path / "voe.txt"), tmp_path)


def test_env_file_keeps_the_lines_voe_does_not_manage():
    previous = ("# old header\nMASTER_IP=10.0.0.9\nVOE_CONCURRENCY=64\n"
                "VOE_PLAN=plan.toml\nnot a setting line\n")
    text = env_file("worker", {"MASTER_IP": "10.0.0.1", "SINK_IP": "10.0.0.2"}, previous, "c")
    lines = text.splitlines()
    assert "MASTER_IP=10.0.0.1" in lines and "SINK_IP=10.0.0.2" in lines
    assert "VOE_CONCURRENCY=64" in lines and "VOE_PLAN=plan.toml" in lines
    assert "MASTER_IP=10.0.0.9" not in lines and "# old header" not in lines


def test_sets_are_checked_like_settings():
    assert parse_sets(["VOE_CONCURRENCY=32", "VOE_LOG_LEVEL=debug"]) == {
        "VOE_CONCURRENCY": "32", "VOE_LOG_LEVEL": "debug"}
    for bad, fragment in [("VOE_CONCURRENCY", "NAME=VALUE"), ("KEY_PASS=x", "never copied"),
                          ("SINK_IP=1.1.1.1", "voe writes"), ("VOE_PREFETCH=-1", "at least 0")]:
        with pytest.raises(CloudConfigError, match=fragment):
            parse_sets([bad])


def test_ssh_config_maps_an_address_like_ssh_does(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host 10.1.2.3\n    HostName 198.18.7.7\n    User alice\n    Port 2222\n"
                      f"    IdentityFile {tmp_path}/alice.pem\n\nHost *\n    User bob\n")
    settings = cloud_settings(tmp_path, VOE_SSH_CONFIG=str(config), KEY_NAME="fleet",
                              SSH_USER="ubuntu")
    mapped = resolve(settings, "10.1.2.3")
    assert (mapped.hostname, mapped.port, mapped.user, mapped.key_file) == (
        "198.18.7.7", 2222, "alice", tmp_path / "alice.pem")
    other = resolve(settings, "10.9.9.9")
    assert (other.hostname, other.port, other.user) == ("10.9.9.9", 22, "bob")
    assert other.key_file == Path("~/.ssh/fleet.pem").expanduser()
    bare = resolve(cloud_settings(tmp_path, VOE_SSH_CONFIG=str(tmp_path / "none")), "10.1.1.1")
    assert (bare.hostname, bare.user) == ("10.1.1.1", "ubuntu")


def test_host_keys_are_remembered_per_instance_and_forgotten(tmp_path):
    path = tmp_path / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "k")))
    keys = HostKeys(path)
    assert keys.known("i-0abc") is None
    keys.remember("i-0abc", key)
    reloaded = HostKeys(path)
    assert reloaded.known("i-0abc").asbytes() == key.asbytes()
    reloaded.forget(["i-0abc"])
    assert HostKeys(path).known("i-0abc") is None


def test_console_output_fingerprints_are_read_as_cloud_init_prints_them(tmp_path):
    public = _keygen(tmp_path / "host").with_suffix(".pub")
    key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "host"))
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(public)], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    assert printed.split()[1] == fingerprints.sha256(key)
    listing = ("boot noise SHA256:" + "A" * 43 + "\n"
               "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
               f"ec2: {printed}\n"
               "ec2: 2048 AA:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99 root@h (RSA)\n"
               "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n")
    assert fingerprints.listed(listing) == {
        fingerprints.sha256(key), "MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"}
    assert fingerprints.matches(key, fingerprints.listed(listing))
    # The keys themselves are as good as their fingerprints; a cut line is no key.
    keys_only = (f"-----BEGIN SSH HOST KEY KEYS-----\n{public.read_text()}"
                 "ssh-rsa AAAAB3Nz=x\n-----END SSH HOST KEY KEYS-----\n")
    assert fingerprints.listed(keys_only) == {fingerprints.sha256(key)}
    other = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "other")))
    assert not fingerprints.matches(other, fingerprints.listed(listing))
    # Outside the markers nothing counts: moto's boot log, an empty console.
    assert fingerprints.listed(listing.split("ec2: -----BEGIN")[0]) == frozenset()
    assert fingerprints.listed("") == frozenset()


def test_launch_needs_its_settings(tmp_path):
    key = tmp_path / "fleet.pem"
    key.write_text("not really a key")
    complete = {"DEFAULT_INSTANCE_ID": "ami-1", "KEY_NAME": "fleet",
                "VOE_OPERATOR_CIDR": "203.0.113.7", "VOE_SSH_KEY_FILE": str(key)}
    assert cloud_settings(tmp_path, **complete).operator_cidr == "203.0.113.7/32"
    cloud_settings(tmp_path, **complete).require_launch_settings()
    for missing, fragment in [("DEFAULT_INSTANCE_ID", "AMI"), ("KEY_NAME", "KEY_NAME"),
                              ("VOE_OPERATOR_CIDR", "VOE_OPERATOR_CIDR")]:
        values = {**complete, missing: ""}
        with pytest.raises(CloudConfigError, match=fragment):
            cloud_settings(tmp_path, **values).require_launch_settings()


def test_service_definitions_restart_on_failure_and_log_to_the_home():
    unit = services.systemd_unit("worker", "ubuntu", "/home/ubuntu")
    assert "Restart=on-failure" in unit
    assert "\nLimitNOFILE=65536\n" in unit.split("[Service]")[1].split("[Install]")[0]
    assert "ExecStart=/home/ubuntu/voe-env/bin/voe worker --no-console" in unit
    assert "StandardOutput=append:/home/ubuntu/worker.log" in unit
    script = services.supervisor_script("sink")
    assert '"$HOME/sink.log"' in script and ".voe/sink.pid" in script
    result = subprocess.run(["sh", "-n", "-c", script + services.supervisor_stop("sink")
                             + services.supervisor_check("sink", 0)], capture_output=True)
    assert result.returncode == 0, result.stderr


def test_settings_command_masks_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {s.name for s in SETTINGS}}
    env.update(AWS_SECRET_KEY="s3cret-Value", KEY_PASS="pass-phrase", AWS_ACCESS_KEY="AKIAX")
    result = subprocess.run([sys.executable, "-m", "voe", "settings"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for secret in ("s3cret-Value", "pass-phrase", "AKIAX"):
        assert secret not in result.stdout
    assert "AWS_SECRET_KEY=********" in result.stdout
    assert "VOE_CLUSTER=voe" in result.stdout


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path
