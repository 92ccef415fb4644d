"""The EC2 side of one cluster (boto3): find, launch, tag and terminate its instances.

Every AWS failure becomes a one-line ``CloudError``: the user sees what went wrong and
which setting to look at, never a botocore traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from voe.cloud.cluster import (
    LIVE_STATES,
    TAG_ADDRESS,
    TAG_CLUSTER,
    TAG_ROLE,
    CloudConfigError,
    CloudError,
    CloudSettings,
    Machine,
)

# Timeouts of one API call, in seconds. Its attempts are botocore's standard retry
# mode: 3, or AWS_MAX_ATTEMPTS.
API_CONNECT_TIMEOUT = 5
API_READ_TIMEOUT = 30
# How long new instances may take to reach "running", and how often to look.
START_TIMEOUT = 600.0
# How long terminated instances may take to be gone, before their group is deleted.
TERMINATE_TIMEOUT = 300.0
POLL_INTERVAL = 2.0
# The port the operator's SSH comes in on.
SSH_PORT = 22

# Error codes that mean the credentials themselves were refused.
CREDENTIAL_ERRORS = {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException",
                     "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                     "RequestExpired"}

# Error codes of GetConsoleOutput asked for the latest output of an instance without it.
LATEST_UNSUPPORTED = {"UnsupportedOperation", "InvalidParameterCombination",
                      "InvalidParameterValue"}


class Fleet:
    """The instances and the security group of one cluster, through the EC2 API."""

    def __init__(self, config: CloudSettings) -> None:
        self.config = config
        with self._errors("connect to EC2"):
            session = boto3.session.Session(
                aws_access_key_id=config.access_key or None,
                aws_secret_access_key=config.secret_key or None,
                region_name=config.region)
            self.client = session.client(
                "ec2", endpoint_url=config.endpoint_url or None,
                config=Config(retries={"mode": "standard"},
                              connect_timeout=API_CONNECT_TIMEOUT,
                              read_timeout=API_READ_TIMEOUT))

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn botocore's exceptions into one-line ``CloudError``s."""
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError):
            raise CloudConfigError(
                "no AWS credentials: set AWS_ACCESS_KEY and AWS_SECRET_KEY, or configure the "
                "standard AWS credential chain (environment, ~/.aws, instance role)") from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as error:
            raise CloudError(f"cannot reach the EC2 API to {doing}: {error}") from None
        except ClientError as error:
            raise self._client_error(doing, error) from None
        except BotoCoreError as error:
            raise CloudError(f"cannot {doing}: {error}") from None

    def _client_error(self, doing: str, error: ClientError) -> CloudError:
        details = error.response.get("Error", {})
        code = details.get("Code", "?")
        message = " ".join(str(details.get("Message", "")).split())
        if code in CREDENTIAL_ERRORS:
            return CloudConfigError(
                f"AWS rejected the credentials ({code}: {message}); check AWS_ACCESS_KEY and "
                "AWS_SECRET_KEY (or the AWS credential chain) and REGION")
        if code.startswith("InvalidAMIID"):
            return CloudConfigError(
                f"AMI {self.config.image_id} does not exist in region {self.config.region} "
                f"(DEFAULT_INSTANCE_ID): {message}")
        if code.startswith("InvalidKeyPair"):
            return CloudConfigError(
                f"EC2 key pair {self.config.key_name!r} does not exist in region "
                f"{self.config.region} (KEY_NAME)")
        if code == "UnauthorizedOperation":
            return CloudConfigError(f"AWS does not allow these credentials to {doing}: "
                                    f"{message}")
        return CloudError(f"cannot {doing}: {code}: {message}")

    def machines(self, states: tuple[str, ...] = LIVE_STATES) -> list[Machine]:
        """The cluster's instances in ``states``, oldest first."""
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.config.cluster]},
                   {"Name": "instance-state-name", "Values": list(states)}]
        found: list[Machine] = []
        with self._errors("list the cluster's instances"):
            for page in self.client.get_paginator("describe_instances").paginate(
                    Filters=filters):
                for reservation in page["Reservations"]:
                    found.extend(Machine.from_instance(instance)
                                 for instance in reservation["Instances"])
        mine = [machine for machine in found
                if machine.tags.get(TAG_CLUSTER) == self.config.cluster]
        return sorted(mine, key=lambda m: (m.launched is None, m.launched, _natural(m.name)))

    def check_launch(self) -> None:
        """Check that the AMI and the key pair exist before anything is launched."""
        with self._errors(f"find AMI {self.config.image_id}"):
            images = self.client.describe_images(ImageIds=[self.config.image_id])["Images"]
        if not images:
            raise CloudConfigError(f"AMI {self.config.image_id} does not exist in region "
                                   f"{self.config.region} (DEFAULT_INSTANCE_ID)")
        with self._errors(f"find key pair {self.config.key_name}"):
            self.client.describe_key_pairs(KeyNames=[self.config.key_name])

    def ensure_security_group(self, ports: list[int]) -> tuple[str, list[str]]:
        """Create or update the cluster's group: voe ports from members, SSH from the operator.

        SSH is then open to ``VOE_OPERATOR_CIDR`` alone: a rule letting port 22 in from any
        other address range (an operator CIDR of before) is revoked, so a changed setting
        takes access away. Returns the group's id and the ranges revoked.
        """
        name = self.config.group_name
        with self._errors(f"find security group {name}"):
            groups = self.client.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if groups:
            group = groups[0]
            tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
            if tags.get(TAG_CLUSTER) != self.config.cluster:
                raise CloudConfigError(
                    f"security group {name} ({group['GroupId']}) exists but is not tagged as "
                    f"cluster {self.config.cluster}'s; choose another VOE_CLUSTER")
            group_id = group["GroupId"]
        else:
            with self._errors(f"create security group {name}"):
                group_id = self.client.create_security_group(
                    GroupName=name,
                    Description=f"voe cluster {self.config.cluster}: voe ports between "
                                "members, SSH from the operator",
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                        {"Key": TAG_CLUSTER, "Value": self.config.cluster}]}])["GroupId"]
        rules = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                  "UserIdGroupPairs": [{"GroupId": group_id}]} for port in sorted(set(ports))]
        rules.append({"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT,
                      "IpRanges": [{"CidrIp": self.config.operator_cidr,
                                    "Description": "voe operator (VOE_OPERATOR_CIDR)"}]})
        for rule in rules:
            with self._errors(f"open ports in security group {name}"):
                try:
                    self.client.authorize_security_group_ingress(
                        GroupId=group_id, IpPermissions=[rule])
                except ClientError as error:
                    code = error.response.get("Error", {}).get("Code")
                    if code != "InvalidPermission.Duplicate":
                        raise
        return group_id, self._revoke_other_ssh(group_id)

    def _revoke_other_ssh(self, group_id: str) -> list[str]:
        """Revoke every address range but the operator's that the group lets reach SSH."""
        name = self.config.group_name
        with self._errors(f"read security group {name}"):
            group = self.client.describe_security_groups(GroupIds=[group_id])[
                "SecurityGroups"][0]
        revoked: list[str] = []
        for permission in group.get("IpPermissions", []):
            if not _admits_ssh(permission):
                continue
            ipv4 = [{"CidrIp": r["CidrIp"]} for r in permission.get("IpRanges", [])
                    if r["CidrIp"] != self.config.operator_cidr]
            ipv6 = [{"CidrIpv6": r["CidrIpv6"]} for r in permission.get("Ipv6Ranges", [])]
            if not ipv4 and not ipv6:
                continue
            stale = {key: permission[key] for key in ("IpProtocol", "FromPort", "ToPort")
                     if key in permission}
            stale.update(IpRanges=ipv4, Ipv6Ranges=ipv6)
            with self._errors(f"revoke old SSH access in security group {name}"):
                self.client.revoke_security_group_ingress(GroupId=group_id,
                                                          IpPermissions=[stale])
            revoked += [r["CidrIp"] for r in ipv4] + [r["CidrIpv6"] for r in ipv6]
        return revoked

    def _extra_group_id(self) -> list[str]:
        extra = self.config.extra_group
        if not extra:
            return []
        if extra.startswith("sg-"):
            return [extra]
        with self._errors(f"find security group {extra}"):
            groups = self.client.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [extra]}])["SecurityGroups"]
        if not groups:
            raise CloudConfigError(f"security group {extra!r} does not exist in region "
                                   f"{self.config.region} (DEFAULT_SECURITY_GROUP)")
        return [groups[0]["GroupId"]]

    def launch(self, role: str, names: list[str], group_id: str) -> list[Machine]:
        """Launch one instance per name, tagged with the cluster and ``role`` from birth."""
        groups = [group_id, *self._extra_group_id()]
        tags = [{"Key": TAG_CLUSTER, "Value": self.config.cluster},
                {"Key": TAG_ROLE, "Value": role}]
        with self._errors(f"launch {len(names)} {role} instance(s)"):
            answer = self.client.run_instances(
                ImageId=self.config.image_id, InstanceType=self.config.instance_type,
                KeyName=self.config.key_name, MinCount=len(names), MaxCount=len(names),
                SecurityGroupIds=groups,
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        launched = [Machine.from_instance(instance) for instance in answer["Instances"]]
        try:
            for machine, name in zip(launched, names, strict=True):
                with self._errors(f"name instance {machine.instance_id}"):
                    self.client.create_tags(Resources=[machine.instance_id],
                                            Tags=[{"Key": "Name", "Value": name}])
                machine.name = name
        except CloudError as error:
            ids = ", ".join(machine.instance_id for machine in launched)
            raise type(error)(f"{error} (launched {ids}; voe cloud down ends them)") from None
        return launched

    def wait_running(self, machines: list[Machine], timeout: float = START_TIMEOUT
                     ) -> list[Machine]:
        """Wait (bounded) until every machine runs and has its addresses."""
        ids = [machine.instance_id for machine in machines]
        deadline = time.monotonic() + timeout
        while True:
            with self._errors("check the new instances"):
                reservations = self.client.describe_instances(InstanceIds=ids)["Reservations"]
            current = {instance["InstanceId"]: Machine.from_instance(instance)
                       for reservation in reservations for instance in reservation["Instances"]}
            for machine in current.values():
                if machine.state in ("shutting-down", "terminated", "stopping", "stopped"):
                    raise CloudError(f"{machine.label} went {machine.state} while starting")
            ready = [current.get(i) for i in ids]
            if all(m is not None and m.state == "running" and m.private_ip for m in ready):
                return [m for m in ready if m is not None]
            if time.monotonic() >= deadline:
                waiting = ", ".join(i for i, m in zip(ids, ready, strict=True)
                                    if m is None or m.state != "running")
                raise CloudError(f"instances not running after {timeout:g} s: {waiting}")
            time.sleep(POLL_INTERVAL)

    def set_address(self, machine: Machine, address: str) -> None:
        """Record the address the machine's peers reach it at (tag ``voe:address``)."""
        with self._errors(f"tag {machine.instance_id}"):
            self.client.create_tags(Resources=[machine.instance_id],
                                    Tags=[{"Key": TAG_ADDRESS, "Value": address}])
        machine.address = address

    def console_output(self, instance_id: str) -> str:
        """The instance's console output (the latest where EC2 has it), or "" if none yet."""
        with self._errors(f"read the console output of {instance_id}"):
            try:
                answer = self.client.get_console_output(InstanceId=instance_id, Latest=True)
            except ClientError as error:
                # Only Nitro instances give the latest output; the others give the buffered one.
                if error.response.get("Error", {}).get("Code") not in LATEST_UNSUPPORTED:
                    raise
                answer = self.client.get_console_output(InstanceId=instance_id)
        return str(answer.get("Output") or "")

    def terminate(self, machines: list[Machine]) -> list[str]:
        """Terminate these machines, each checked again to carry this cluster's tag."""
        ids = [machine.instance_id for machine in machines
               if machine.tags.get(TAG_CLUSTER) == self.config.cluster]
        if len(ids) != len(machines):
            raise CloudError("refusing to terminate an instance without this cluster's tag")
        if not ids:
            return []
        with self._errors("terminate the cluster's instances"):
            self.client.terminate_instances(InstanceIds=ids)
        return ids

    def wait_terminated(self, ids: list[str], timeout: float = TERMINATE_TIMEOUT) -> bool:
        """Wait (bounded) until these instances are terminated; False if some are not yet."""
        deadline = time.monotonic() + timeout
        while ids:
            with self._errors("check the terminated instances"):
                reservations = self.client.describe_instances(InstanceIds=ids)["Reservations"]
            states = {instance["State"]["Name"] for reservation in reservations
                      for instance in reservation["Instances"]}
            if states <= {"terminated"}:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def delete_security_group(self) -> str | None:
        """Delete the cluster's security group if it exists; return its id."""
        with self._errors(f"find security group {self.config.group_name}"):
            groups = self.client.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [self.config.group_name]},
                {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.config.cluster]}])[
                "SecurityGroups"]
        if not groups:
            return None
        group_id = groups[0]["GroupId"]
        with self._errors(f"delete security group {self.config.group_name}"):
            self.client.delete_security_group(GroupId=group_id)
        return group_id


def _admits_ssh(permission: dict) -> bool:
    """True when an ingress permission lets TCP port 22 in (all protocols count)."""
    protocol = str(permission.get("IpProtocol"))
    if protocol == "-1":
        return True
    return protocol in ("tcp", "6") and (
        permission.get("FromPort", 0) <= SSH_PORT <= permission.get("ToPort", 65535))


def _natural(name: str) -> list[int | str]:
    """Sort key that puts ``voe-worker-2`` before ``voe-worker-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
