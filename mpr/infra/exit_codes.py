"""The exit codes of every entry point (`mpr`, `make up`, the worker, the codec server, the
demo): one table, so that scripts can rely on them.

    0    done
    1    failure: Temporal or the catalog cannot be reached, a setting cannot be used, a
         server could not start, the release failed; anything else
    2    usage: bad arguments or invalid input; nothing was sent or started
    3    refused: the workflow refused the command (wrong stage, not authorised, off the
         ladder...; the reason is printed), or it has already finished
    4    not found: no such release or mini service version (workflow) in the namespace
    5    timed out waiting for a stage (`mpr start --wait`)
    130  interrupted (Ctrl-C)
    143  terminated (SIGTERM), after stopping what it started

Whatever the code, an expected failure is one line on stderr saying what failed and what to
do (infra.entrypoint); a traceback is a bug.
"""

OK = 0
FAILURE = 1
USAGE = 2
REFUSED = 3
NOT_FOUND = 4
TIMED_OUT = 5
INTERRUPTED = 130
TERMINATED = 143
