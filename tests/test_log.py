import io
import sys

from qvggt_deploy.log import configure, get_logger


def test_cli_log_follows_a_replaced_stderr(monkeypatch):
    """A log configured while one stderr was active writes to the stderr active at emit time,
    never to the earlier (possibly closed) stream."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    get_logger("qvggt_deploy.test").info("hello")
    assert "[INFO] hello" in second.getvalue()
    configure()  # configuring again adds no second handler
    monkeypatch.setattr(sys, "stderr", third := io.StringIO())
    get_logger("qvggt_deploy.test").info("once")
    assert third.getvalue().count("once") == 1


def test_cli_log_survives_a_library_disabling_existing_loggers(monkeypatch):
    import logging.config

    logger = get_logger("qvggt_deploy.cli")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})
    assert logger.disabled
    configure()
    monkeypatch.setattr(sys, "stderr", out := io.StringIO())
    logger.error("still heard")
    assert "[ERROR] still heard" in out.getvalue()
