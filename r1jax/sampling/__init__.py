"""In-process sampler on the training weights: KV cache, one compiled decode loop, log-probs."""
from r1jax.sampling.buckets import BucketPolicy
from r1jax.sampling.cache import cache_report
from r1jax.sampling.params import SamplingParams
from r1jax.sampling.sampler import GenerationResult, Sampler, generate

__all__ = ["BucketPolicy", "GenerationResult", "Sampler", "SamplingParams", "cache_report", "generate"]
