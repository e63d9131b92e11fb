"""The sync engine: plan (pure, streamed into a SQLite workspace), guards, apply (batched), report, state.

Every trigger reaches CVC through here: an upload, a queue message and an HTTP call all become rows of a plan,
each row ends in exactly one ``Outcome``, and the report checks that received equals the sum of outcomes.
"""
