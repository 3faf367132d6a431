"""Services the HTTP routes call: the session registry (sessions, tokens, limits) and the admin views."""
