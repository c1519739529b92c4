"""Errors that carry one clear message naming the problem and the fix."""


class SRDCInputError(ValueError):
    """Bad input from the user: unknown dataset/domain/variant, missing files, class-count mismatch, ...

    The command-line tools print the message alone and exit with status 2.
    """


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the history up to the last finished epoch is kept."""
