"""Loopback emulators of the networks' HTTP APIs, for testing adapters over real HTTP."""
