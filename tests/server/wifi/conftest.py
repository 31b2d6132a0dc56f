"""Fixtures of the Wi-Fi tests (defined in privatebus.py, shared with the API tests)."""

from .privatebus import mock_nm

__all__ = ["mock_nm"]
