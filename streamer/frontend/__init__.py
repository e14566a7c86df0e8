"""Audio front-ends: microphone capture and voice activity gating."""
