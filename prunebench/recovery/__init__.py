"""Recovery: LoRA post-training (peft) of any pruned checkpoint, merged back into plain weights.
Knows nothing of how the model was pruned."""
