"""Notifiers: how gpufleet delivers messages to people and systems outside it (webhooks for now)."""
