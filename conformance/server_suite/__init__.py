"""Server conformance suite: Reactor protocol + Helios semantics, against any server.

    pytest --pyargs conformance.server_suite                                  # starts helios-mock itself
    HELIOS_MOCK_TOKEN=<jwt> pytest --pyargs conformance.server_suite --helios-url https://host

Options come from the ``helios`` pytest plugin (``--helios-url`` / ``HELIOS_MOCK_URL``, ``HELIOS_MOCK_TOKEN``,
``--helios-speed`` for the started mock). Tests marked ``mock_only`` need helios-mock's marker band or admin
endpoints and skip against other servers. See ``conftest.py`` for the environment knobs.
"""
