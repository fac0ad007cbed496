"""Exit codes of ``cxrcurate`` (the README lists them): one place, so every command means the same by each.

- ``EXIT_OK`` 0: success, the check passed.
- ``EXIT_DATA`` 1: bad input data: a table, file or folder that cannot be used as it is (the error names it and the
  fix).
- ``EXIT_USAGE`` 2: a usage error (argparse's own, or ``UsageError``: an option missing, out of range or
  contradicting another).
- ``EXIT_CHECK_FAILED`` 3: the check ran and failed: leakage found (``leakage``, ``split``), a release or your files
  do not match it (``verify``), a download does not match its digest (``fetch --check``), the audit says FAIL.
- ``EXIT_INTERRUPTED`` 130, ``EXIT_BROKEN_PIPE`` 141 (as a shell reports SIGPIPE).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
