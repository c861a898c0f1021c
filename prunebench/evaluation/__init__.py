"""Evaluation: perplexity, zero-shot accuracy through lm-eval (task YAMLs in `tasks/`) and the
efficiency benchmark, the same for every model. Never imports a pruning method."""


def model_evaluation(evaluation: dict) -> dict:
    """The `evaluation` settings one model's result depends on: all but the dense-only
    `full_for_dense` switches, so that switching the dense model's full test sets on or off
    neither reruns the pruned models' evaluations nor separates their results from earlier ones."""
    return {**evaluation, **{part: {k: v for k, v in evaluation[part].items() if k != "full_for_dense"}
                             for part in ("perplexity", "zeroshot") if part in evaluation}}
