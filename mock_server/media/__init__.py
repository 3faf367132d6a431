"""The media layer: frame synthesis, the marker band, the frame feed and the encode-once chunk cache."""
