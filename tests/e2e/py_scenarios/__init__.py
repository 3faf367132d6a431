"""Python SDK client programs for the end-to-end tests (run inside the namespace) and their pytest runner."""
