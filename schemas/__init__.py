"""The contract files (JSON Schema, OpenAPI, reactor_wire.v1 .proto), installed as ``helios_mock_schemas``.

Read them from an installed helios-mock with ``importlib.resources.files("helios_mock_schemas")``, or write a
copy with ``helios-mock schemas --out DIR``.
"""
