"""Text encoders for language-aligned IMU models: a numpy MiniLM (all-MiniLM-L6-v2) and a hashed test embedder."""
