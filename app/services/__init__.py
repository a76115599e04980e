"""The use cases the web edge, the command line, the console and the workers share: applying
events to the ledger, the signal outbox, and replay, discard and dry runs."""
