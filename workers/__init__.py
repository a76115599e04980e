"""RQ jobs that apply stored events to the ledger, and the processes that run them."""
