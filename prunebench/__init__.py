"""PruneBench's shared library, organised by the stages of the pipeline:

  sources      data files and model sources (verification, materialisation, readers, families, BOS)
  calibration  calibration windows and the dense model's activation statistics
  pruning      the method interface, scores, structure, surgery and checkpoints
  recovery     LoRA post-training of a pruned model
  evaluation   perplexity, zero-shot (lm-eval) and efficiency measurements
  reporting    collation, tables, figures, narrative and protocol notes

plus `config` (the checks run before any job), `paths` (where every stage's files live), `io`
(atomic writes) and `provenance`. The pruning methods themselves live in the top-level package
`methods/`, the extension point: dependencies point one way, methods -> pruning -> sources, and
evaluation and reporting never import a method.
"""
