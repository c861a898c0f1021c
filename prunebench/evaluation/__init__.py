"""Evaluation: perplexity, zero-shot accuracy through lm-eval (task YAMLs in `tasks/`) and the
efficiency benchmark, the same for every model. Never imports a pruning method."""


def model_evaluation(evaluation: dict) -> dict:
    """The `evaluation` settings one model's result depends on: all but the dense-only
    `perplexity.full_for_dense`, so that switching the dense model's full test sets on or off
    neither reruns the pruned models' evaluations nor separates their results from earlier ones."""
    perplexity = {k: v for k, v in evaluation["perplexity"].items() if k != "full_for_dense"}
    return {**evaluation, "perplexity": perplexity}
