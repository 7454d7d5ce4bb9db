"""Auto-remediation: cases opened from health events, the repair ladder, safety budgets, tickets and the outbox."""
