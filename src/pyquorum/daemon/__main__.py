"""``python -m pyquorum.daemon``: the same as the ``pyquorumd`` command."""

from pyquorum.daemon.main import main

raise SystemExit(main())
