"""Every Corosync constant pyquorum re-declares, against Debian's public headers.

gcc prints the values from ``corosync/corotypes.h`` (CS_ERR_*, CS_DISPATCH_*,
CS_TRACK_*; libcorosync-common-dev), ``corosync/quorum.h`` (libquorum-dev),
``corosync/votequorum.h`` (libvotequorum-dev) and ``corosync/cmap.h`` (the cmap value
types the libqb endpoint answers with; libcmap-dev).  Skips, naming the package, when a
header or gcc is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pyquorum.client import _common
from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.errors import CsErr
from pyquorum.wire import qbmsg as qb

_HEADERS = {"/usr/include/corosync/corotypes.h": "libcorosync-common-dev",
            "/usr/include/corosync/quorum.h": "libquorum-dev",
            "/usr/include/corosync/votequorum.h": "libvotequorum-dev",
            "/usr/include/corosync/cmap.h": "libcmap-dev"}


def _ours() -> dict[str, int]:
    values = {e.name: int(e.value) for e in CsErr}
    values.update({
        "CS_DISPATCH_ONE": _common.CS_DISPATCH_ONE, "CS_DISPATCH_ALL": _common.CS_DISPATCH_ALL,
        "CS_DISPATCH_BLOCKING": _common.CS_DISPATCH_BLOCKING,
        "CS_DISPATCH_ONE_NONBLOCKING": _common.CS_DISPATCH_ONE_NONBLOCKING,
        "CS_TRACK_CURRENT": _common.CS_TRACK_CURRENT,
        "CS_TRACK_CHANGES": _common.CS_TRACK_CHANGES,
        "CS_TRACK_CHANGES_ONLY": _common.CS_TRACK_CHANGES_ONLY,
        "QUORUM_MODEL_V0": q.QUORUM_MODEL_V0, "QUORUM_MODEL_V1": q.QUORUM_MODEL_V1,
    })
    values.update({name: getattr(vq, name) for name in dir(vq)
                   if name.startswith(("VOTEQUORUM_INFO_", "VOTEQUORUM_NODESTATE_",
                                       "VOTEQUORUM_QDEVICE_"))})
    for suffix in ("INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64",
                   "FLOAT", "DOUBLE", "STRING", "BINARY"):
        values[f"CMAP_VALUETYPE_{suffix}"] = getattr(qb, f"CMAP_{suffix}")
    return values


def test_constants_match_the_debian_headers(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    missing = [f"{h} ({pkg})" for h, pkg in _HEADERS.items() if not Path(h).is_file()]
    if gcc is None or missing:
        pytest.skip(f"needs gcc and the headers: missing {', '.join(missing) or 'gcc'}")
    ours = _ours()
    src = tmp_path / "consts.c"
    src.write_text("#include <stdio.h>\n"
                   + "".join(f"#include <{h.removeprefix('/usr/include/')}>\n" for h in _HEADERS)
                   + "int main(void) {\n"
                   + "".join(f'  printf("{n} %lld\\n", (long long)({n}));\n' for n in ours)
                   + "  return 0;\n}\n")
    exe = tmp_path / "consts"
    build = subprocess.run([gcc, "-Wall", "-o", str(exe), str(src)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True)
    theirs = {name: int(value) for name, value in
              (line.split() for line in out.stdout.splitlines())}
    assert theirs == ours
    assert len(ours) > 50  # the error codes, flags, states and value types all took part
