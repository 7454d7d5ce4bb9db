"""Use cases: the only code that applies a change and saves it with its event, in one transaction."""
