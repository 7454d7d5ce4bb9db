"""The REST API under /api/v1: thin routes over the services, with token auth and problem+json errors."""
