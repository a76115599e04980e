"""hookledger: receive exchange and payment callbacks, apply them exactly once to a ledger."""
