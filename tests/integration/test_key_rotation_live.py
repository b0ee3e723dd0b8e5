"""Authkey rotation by reload on a live 3-node cluster of real daemons.

The operator writes a new key into ``totem.keyfile`` on every node and runs
``pyquorumtool --reload``: every daemon re-reads the key, accepts both keys, and seals
with the new one once every member has it (``NodeEngine.rotate_key``).  The ring must
not change, and a restarted node comes back with the new key only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from harness import LocalCluster, wait_until

WAIT_S = 30.0


def ring(c: LocalCluster, node: int) -> str:
    return c.cmap(node, "runtime.pyquorum.ring_id")["runtime.pyquorum.ring_id"]


def test_a_new_key_is_rotated_in_without_a_view_change(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    for n in (1, 2, 3):
        c.start(n)
    wait_until(lambda: len({ring(c, n) for n in (1, 2, 3)}) == 1
               and c.cmap(1, "runtime.pyquorum.members")["runtime.pyquorum.members"] == "1 2 3",
               WAIT_S, "one ring of 3")
    before = ring(c, 1)
    c.keyfile.write_bytes(os.urandom(128))  # one file, shared by the three nodes
    r = subprocess.run([sys.executable, "-m", "pyquorum.tools.quorumtool",
                        "--run-dir", str(c.run_dir(2)), "--reload"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: all("every member has it" in c.log(n) for n in (1, 2, 3)), WAIT_S,
               "every node sealing with the new key")
    wait_until(lambda: all("The previous authkey is no longer accepted" in c.log(n)
                           for n in (1, 2, 3)), WAIT_S, "the old key dropped")
    assert {ring(c, n) for n in (1, 2, 3)} == {before}  # no view change
    c.kill(3)
    wait_until(lambda: c.cmap(1, "runtime.pyquorum.members")["runtime.pyquorum.members"]
               == "1 2", WAIT_S, "node 3 gone")
    c.start(3)  # boots with the new key only
    wait_until(lambda: c.cmap(3, "runtime.pyquorum.members")["runtime.pyquorum.members"]
               == "1 2 3", WAIT_S, "node 3 back with the new key")
