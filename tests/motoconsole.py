"""moto's server, whose GetConsoleOutput tells what the lab's machines would print.

moto answers GetConsoleOutput with one fixed boot log for every instance, and nothing
in its API changes that. On EC2 the console output is what the machine printed while
booting, cloud-init's host key fingerprints among it. In the lab, the machine behind an
instance is one of its sshd hosts, so the lab writes that boot text, per instance, into
``VOE_LAB_CONSOLE_DIR/<instance id>``; this server answers GetConsoleOutput with it, and
with moto's own text for instances the lab wrote nothing for. Everything else is moto's.

Run as ``python tests/motoconsole.py ARGS``: ARGS are moto.server's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.responses.general import General
from moto.ec2.utils import Base64EncodedString
from moto.server import main

CONSOLE_DIR = Path(os.environ["VOE_LAB_CONSOLE_DIR"])
_moto_console_output = General.get_console_output


def get_console_output(self: General) -> ActionResult:
    """The lab's boot text of the instance when it wrote one, else moto's fixed one."""
    instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
    written = CONSOLE_DIR / instance.id
    if not written.is_file():
        return _moto_console_output(self)
    return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(),
                         "Output": Base64EncodedString.from_raw_string(written.read_text())})


General.get_console_output = get_console_output

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
