"""atheris harness: the sealed-datagram open path (``SecureChannel.open``, then ``codec.decode``).

Run by ``fuzz/campaign.py --target sealed``, or directly with libFuzzer's options::

    python fuzz/fuzz_sealed.py -runs=100000 -max_total_time=300 CORPUS_DIR
"""

import sys

import atheris

with atheris.instrument_imports(include=["pyquorum"]):
    from fuzztargets import sealed_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, sealed_one)
    atheris.Fuzz()
