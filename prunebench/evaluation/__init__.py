"""Evaluation: perplexity, zero-shot accuracy through lm-eval (task YAMLs in `tasks/`) and the
efficiency benchmark, the same for every model. Never imports a pruning method."""
