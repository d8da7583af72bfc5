"""Two-phase commit: the transaction, coordinator, recovery, decision logs."""
