"""Fixtures: cached micro-preset exports."""
from tests.micro_exports import exports, images  # noqa: F401
