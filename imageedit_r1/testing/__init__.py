"""Test fixtures built by code: tiny random-weight models and loopback fake API servers.

Nothing here downloads anything; heavy libraries are imported inside the builders.
"""
