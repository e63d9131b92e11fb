"""Function Compute and Lambda: invocations, the context a run talks to, triggers, dispatch."""
