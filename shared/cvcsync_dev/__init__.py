"""Development only: the CVC emulator, the demo, local invoke and serve. Not in the function layers."""
