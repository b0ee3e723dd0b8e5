"""atheris harness: the corosync.conf parser (``parse_text``, ``resolve_uidgid``, ``build_config``).

Run by ``fuzz/campaign.py --target config``, or directly with libFuzzer's options::

    python fuzz/fuzz_config.py -runs=100000 -max_total_time=300 CORPUS_DIR
"""

import sys

import atheris

with atheris.instrument_imports(include=["pyquorum"]):
    from fuzztargets import config_one

if __name__ == "__main__":
    atheris.Setup(sys.argv, config_one)
    atheris.Fuzz()
