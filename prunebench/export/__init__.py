"""Deployable formats of a pruned (or dense) checkpoint: GGUF for llama.cpp (`gguf`), quantized by
llama.cpp's own quantizer and run through llama-cpp-python (`llamacpp`), and a standard Hugging Face
folder where a standard config describes the structure (`hf`)."""
