"""atheris harness: the cluster message codec (``codec.decode``: the datagram after decryption).

Run by ``fuzz/campaign.py --target codec``, or directly with libFuzzer's options::

    python fuzz/fuzz_codec.py -runs=100000 -max_total_time=300 CORPUS_DIR
"""

import sys

import atheris

with atheris.instrument_imports(include=["pyquorum"]):
    from fuzztargets import codec_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, codec_one)
    atheris.Fuzz()
