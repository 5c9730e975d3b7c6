"""The exit statuses of every tanma-sync process, the CLI's and the daemon's alike."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FATAL = 1  # settings, credentials, the database: nothing (more) could be done
    USAGE = 2  # the command line itself is wrong
    PARTIAL = 3  # some customers failed or some records were set aside
    # Stopped by SIGINT or SIGTERM before the work was done: 128 + SIGINT for both, since the
    # pass stopped cleanly rather than being killed by the signal (README, "Exit status").
    INTERRUPTED = 130
