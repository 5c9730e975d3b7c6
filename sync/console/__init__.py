"""The operator console: read-only pages over the mirror, served by the daemon's status
listener under /console/ or alone by ``tanma-sync console``."""
