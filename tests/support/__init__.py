"""Helpers shared by the tests: a signer for raw requests and a launcher for the emulator as a real process."""
