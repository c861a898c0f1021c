"""Sources: the data registry (sha256-verified files, their readers) and model sources (builtin,
path, gguf, hub) materialised as plain safetensors directories. Knows nothing of pruning."""
