"""streamer: streaming on-device speech recognition."""
