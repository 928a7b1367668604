"""On-disk model formats, read with numpy only (TensorFlow-free)."""
