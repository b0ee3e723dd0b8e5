"""atheris harness: the IPC frame decoders (``decode_body``, ``FrameReader``, ``RequestFramer``).

Run by ``fuzz/campaign.py --target ipc``, or directly with libFuzzer's options::

    python fuzz/fuzz_ipc.py -runs=100000 -max_total_time=300 CORPUS_DIR
"""

import sys

import atheris

with atheris.instrument_imports(include=["pyquorum"]):
    from fuzztargets import ipc_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, ipc_one)
    atheris.Fuzz()
