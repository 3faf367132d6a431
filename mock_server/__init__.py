"""helios-mock: a CPU-only mock of the Helios real-time video model on the Reactor wire protocol."""

from .config import VERSION as __version__
from .images import image_id_of
from .markers import Markers, decode_markers, prompt_id

__all__ = ["Markers", "__version__", "decode_markers", "image_id_of", "prompt_id"]
