"""The runs: an export (upload), its continuations, user changes (queue, HTTP), approvals."""
