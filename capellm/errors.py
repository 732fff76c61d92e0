"""The errors capellm reports to a user as one line, and the exit codes of the command line.

Every problem with what a user handed over (a config value, a file, an image, a box, a
checkpoint, a run folder) is raised as a `CapellmError` subclass whose message names the file
and the field; the `capellm` command prints it as `capellm <command>: error: <message>` and exits
with EXIT_BAD_INPUT. Anything else is a bug and keeps its traceback.
"""

EXIT_OK = 0
EXIT_NOTHING_DONE = 1      # ran, but produced nothing (capellm predict: no image succeeded)
EXIT_BAD_INPUT = 2         # refused before doing anything, or stopped with everything kept


class CapellmError(ValueError):
    """Bad input or an unusable state, reported in one line that names the file or field."""


class CheckpointError(CapellmError):
    """A checkpoint or run folder that cannot be loaded, resumed or written as asked."""


class TrainingError(CapellmError):
    """Training stopped: the loss became non-finite, or the run folder is in use or taken."""
