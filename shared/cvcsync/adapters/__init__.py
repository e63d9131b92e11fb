"""The services cvc-sync talks to: CVC (signed RPC client) and the object store."""
