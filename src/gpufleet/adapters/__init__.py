"""Everything that touches the outside world: storage, cluster drivers, notifiers and format parsers."""
