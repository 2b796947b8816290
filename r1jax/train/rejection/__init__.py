"""Rejection sampling (R1 paper §2.3.3) and teacher data for distillation, as a library.

From a policy (the reasoning-RL checkpoint, or a distillation teacher), sample k completions per
prompt, keep only the correct and readable ones, and turn them into SFT records:

    rows, stats = generate_and_select(sampler, params, tok, template, records, reward_fn, k=4, ...)
    mixed = mix_with_non_reasoning(rows, instruction_rows, ratio=3.0, seed=0)
    write_dataset(mixed, "data/rejection_sft.jsonl")

A completion is kept when (in this order; the first failing check is its drop reason):
1. it is correct: its accuracy score is >= `correct_threshold` (0.5; the rule verifiers give 0/1;
   a completion with ids past the tokenizer's vocabulary has no faithful text and scores 0);
2. it finished (`finish_reason == "stop"`): a completion cut at the token limit is not a complete
   response to imitate, even if an answer block happens to be closed;
3. its chain of thought passes the readability filters (`filter_reasons`, below);
4. it differs from the completions already kept for its prompt (whitespace-normalised), and
5. fewer than `keep_per_prompt` completions of its prompt were kept before it (sample order;
   samples are i.i.d., so "the first ones" is a random choice).

Readability filters (paper: "we filter out chain-of-thought with mixed languages, long paragraphs,
and code blocks"). The chain of thought is the `<think>…</think>` block of the response:
- `no_think`: the response has no complete think block (with `require_think`): there is no CoT to
  check, and SFT on it would teach the model to skip the R1 format.
- `mixed_language`: the language-consistency reward (rewards/language.py: share of CoT words in
  the target language's script) is below `min_language_consistency`. A CoT with no words at all
  (only math) is consistent. The target language is the record's `language`, else the filter's.
- `long_paragraph`: some paragraph is longer than `max_paragraph_chars` characters. A paragraph
  is a maximal run of text without a line break: R1-format reasoning writes a step per line, and
  a wall of text with no break is what hurts readability. 0 disables the check.
- `code_block`: the CoT contains a Markdown code fence (```), unless `allow_code_blocks`.

Output records (kind "sft"): {prompt, response, answer, task, language, source, id}, where
`prompt` is the raw problem (the SFT pipeline applies the template) and `response` is the
template's `generation_prefix` + the completion text (EOS / turn-end stop token removed; an
`</answer>` stop is content and stays): the R1 format, reasoning + summary with `<answer>`.
"""
from r1jax.train.rejection.dataset import FORMATS, mix_with_non_reasoning, write_dataset
from r1jax.train.rejection.filters import (
    CODE_BLOCK, CODE_FENCE, FILTER_REASONS, LONG_PARAGRAPH, MIXED_LANGUAGE, NO_THINK, FilterConfig,
    filter_reasons, longest_paragraph, normalize_language)
from r1jax.train.rejection.generation import (
    GENERATION_SUMS, combine_stats, generate_and_select, generation_summary, response_text, scores_of)
from r1jax.train.rejection.selection import DROP_REASONS, add_counts, empty_counts, select_samples, summarize

__all__ = [
    "CODE_BLOCK", "CODE_FENCE", "DROP_REASONS", "FILTER_REASONS", "FORMATS", "FilterConfig",
    "GENERATION_SUMS", "LONG_PARAGRAPH", "MIXED_LANGUAGE", "NO_THINK", "add_counts", "combine_stats",
    "empty_counts", "filter_reasons", "generate_and_select", "generation_summary", "longest_paragraph",
    "mix_with_non_reasoning", "normalize_language", "response_text", "scores_of", "select_samples",
    "summarize", "write_dataset",
]
