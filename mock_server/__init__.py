"""helios-mock: a CPU-only mock of the Helios real-time video model on the Reactor wire protocol."""

from mock_server.config import VERSION as __version__
from mock_server.media.markers import Markers, decode_markers, prompt_id
from mock_server.model.images import image_id_of

__all__ = ["Markers", "__version__", "decode_markers", "image_id_of", "prompt_id"]
