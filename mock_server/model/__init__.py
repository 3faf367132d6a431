"""The Helios model layer: the pure state machine, its command and message models, images, the chunk plan."""
