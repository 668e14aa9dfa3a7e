"""Models: references (path, zoo:NAME, GGUF, ollama:NAME), loading and saving, architecture configs."""
