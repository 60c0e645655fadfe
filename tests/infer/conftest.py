import logging

import pytest


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture()
def log_text():
    """What the CLI logged during the test (its ``qvggt`` logger does not propagate to caplog)."""
    handler = _Collect()
    logger = logging.getLogger("qvggt")
    logger.addHandler(handler)
    yield lambda: "\n".join(handler.lines)
    logger.removeHandler(handler)
