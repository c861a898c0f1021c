"""Sources: the data registry (sha256-verified files, their readers), model sources (builtin,
path, gguf, hub) materialised as plain safetensors directories, the model families the surgery
supports (checked from a model's config) and the BOS protocol of a model's tokenizer. Knows nothing
of pruning."""
