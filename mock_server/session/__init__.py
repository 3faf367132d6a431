"""One Helios session and its parts: connections, uploads, signalling, chunk clock, watchdog, record."""
