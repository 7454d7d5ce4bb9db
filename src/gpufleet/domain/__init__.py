"""Pure rules of the fleet: no I/O, no clock reads. Time is always passed in."""
