"""The schedulers the fleet runs under: which driver acts on which cluster, and keeping their view in step with ours."""
