"""Evaluation: pass@1 over k samples, unbiased pass@k, cons@k majority vote, reflection-word and
length statistics (`metrics`); result records, JSON and Markdown tables (`report`); training-curve
PNGs (`plots`, imported on demand because it loads matplotlib)."""
from r1jax.eval.metrics import (
    DEFAULT_REFLECTION_WORDS, cluster_answers, cons_at_k, consensus_correct, majority_vote,
    math_equivalent, mean_pass_at_k, normalize_answer, pass_at_1_mean, pass_at_k,
    reflection_metrics, reflection_word_counts, reflection_word_frequency, response_length_stats)
from r1jax.eval.report import (
    EvalResult, load_json, markdown_table, result_from_samples, write_json, write_markdown)

__all__ = [
    "DEFAULT_REFLECTION_WORDS", "cluster_answers", "cons_at_k", "consensus_correct",
    "majority_vote", "math_equivalent", "mean_pass_at_k", "normalize_answer", "pass_at_1_mean",
    "pass_at_k", "reflection_metrics", "reflection_word_counts", "reflection_word_frequency",
    "response_length_stats", "EvalResult", "load_json", "markdown_table", "result_from_samples",
    "write_json", "write_markdown",
]
