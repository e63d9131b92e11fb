"""Trigger adapters: what a function's ``handler`` calls. Each decodes its platform's event, runs the engine and
shapes the platform's answer; the handlers in ``functions/`` are one line on top of these."""
