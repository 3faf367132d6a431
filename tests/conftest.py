"""Collection of the repository's own suite."""

# Client projects that run *under* `helios-mock run` (tests/test_run_command.py starts them there, with
# HELIOS_MOCK_URL set); they are not tests of this suite themselves.
collect_ignore = ["py_harness", "js_harness"]
