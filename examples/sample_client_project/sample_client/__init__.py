"""A sample Helios client app (what a team would build on the Reactor wire protocol)."""

from .app import HeliosApp, NotReady

__all__ = ["HeliosApp", "NotReady"]
