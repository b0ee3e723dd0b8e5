"""atheris harness: the libqb endpoint's decoders (``wire/qbmsg.py``).

Run by ``fuzz/campaign.py --target qb``, or directly with libFuzzer's options::

    python fuzz/fuzz_qb.py -runs=100000 -max_total_time=300 CORPUS_DIR
"""

import sys

import atheris

with atheris.instrument_imports(include=["pyquorum"]):
    from fuzztargets import qb_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, qb_one)
    atheris.Fuzz()
