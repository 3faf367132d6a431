"""HTTP routes, one module per route family; each endpoint calls a service and shapes its answer."""
