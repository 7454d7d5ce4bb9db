"""What every capability runs on: the database handle, the clock, who is calling, and the errors they raise."""
