"""Shared pytest configuration: the harness fixtures live in tests/support."""

pytest_plugins = ["tests.support.fixtures"]
