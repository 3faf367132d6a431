"""One Helios session and its parts: signalling, uploads, inbound, outbound, clock, watchdog, tasks."""
