"""Fault and load tests: real worker processes, a private Redis, PostgreSQL and the emulators."""
