"""Process exit for our command-line entry points.

The Temporal SDK's native runtime can abort the interpreter while it shuts down (temporalio
sdk-python#300: "Fatal Python error: PyGILState_Release", exit code 134) after the program has
done its work. Entry points therefore flush their output and leave with `os._exit`, so the
exit code is the program's own.
"""

import os
import sys
from collections.abc import Callable
from typing import NoReturn


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    try:
        code = main() or 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (1 if exit_.code else 0)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
