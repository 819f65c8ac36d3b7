"""Evaluation: question suites, model-free metrics and the base-vs-tuned scorecard.

`questions` loads the suites, `metrics` scores one answer (pure functions,
English and Chinese), `scorecard` turns a run's answers into the scorecard
JSON and table. Generating the answers is `generate`'s job; nothing here loads
a model.
"""
