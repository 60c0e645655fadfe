"""One exception type for user-facing errors.

The CLI turns :class:`QvggtError` into a one-line message and exit code 1 without a traceback;
any other exception is a bug and keeps its traceback.
"""


class QvggtError(Exception):
    """A problem with the user's input or environment (bad file, wrong shape, missing package).

    The message must name the offending file, node, layer or value so the user can act on it.
    """
