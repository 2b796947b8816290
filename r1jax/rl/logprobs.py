"""Per-token log-probs (and entropy) of target tokens from final hidden states and the LM head.

`token_logprobs` is the fused kernel: a `jax.custom_vjp` whose forward and backward each scan
over chunks of tokens, so the [B, T, V] logits never exist, neither in the forward nor in the
backward. Forward per chunk: logits = h @ W (in fp32), logsumexp, target logit, optional entropy.
Residuals are only the inputs (hidden, head, targets) and per-token logsumexp/entropy ([B*T]).
Backward per chunk: recompute the logits, form d logp / d logits = onehot - softmax (and the
entropy term), then dh = dlogits @ W^T and dW += h^T @ dlogits (accumulated in fp32).

Layout: B*T tokens are flattened, padded to a multiple of the chunk, and split into *strided*
chunks (token a * num_chunks + b is row a of chunk b). The scan walks the minor axis, so a
batch/sequence sharding of the token axis stays on the rows of every chunk and each device
works on its own tokens (GSPMD does not have to gather the scanned axis). Targets are picked
with an iota comparison rather than a gather, which also works when the vocab axis of the head
is sharded. Targets outside [0, V) (e.g. padding ids of -1) give a finite, meaningless value:
mask them out in the loss.

`temperature` T divides the logits (in fp32, inside the kernel) before the softmax: GRPO trains the
tempered distribution its rollouts were sampled from (old, reference and trained log-probs alike).

`naive_token_logprobs` is the plain full-logits reference used by tests and benchmarks.
The entropy output of both functions is differentiable (gradient dH/dz = -p (log p + H)), unless
`entropy_grad=False` (GRPO: the entropy is only logged).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _check_inputs(fn: str, hidden, head, targets):
  if jnp.ndim(hidden) != 3:
    raise ValueError(f"{fn}: hidden must be [B, T, D], got shape {jnp.shape(hidden)}")
  if jnp.ndim(head) != 2 or jnp.shape(head)[0] != jnp.shape(hidden)[2]:
    raise ValueError(f"{fn}: head must be [D, V] with D = {jnp.shape(hidden)[2]} (for tied "
                     f"embeddings pass embedding.T), got shape {jnp.shape(head)}")
  if jnp.shape(targets) != jnp.shape(hidden)[:2]:
    raise ValueError(f"{fn}: targets must be [B, T] = {jnp.shape(hidden)[:2]}, "
                     f"got shape {jnp.shape(targets)}")
  if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
    raise ValueError(f"{fn}: targets must be integer token ids, got {jnp.result_type(targets)}")


def _compute_dtype(hidden, head, logit_dtype):
  """fp32 logits for bf16/fp32 inputs; fp64 when the inputs are fp64 (x64 tests)."""
  return jnp.promote_types(jnp.dtype(logit_dtype), jnp.promote_types(hidden.dtype, head.dtype))


def naive_token_logprobs(hidden: jax.Array, head: jax.Array, targets: jax.Array, *,
                         compute_entropy: bool = False, logit_dtype=jnp.float32, temperature: float = 1.0):
  """Reference path: materialises the full [B, T, V] logits. Same outputs as token_logprobs."""
  _check_inputs("naive_token_logprobs", hidden, head, targets)
  dtype = _compute_dtype(hidden, head, logit_dtype)
  logits = jnp.einsum("btd,dv->btv", hidden, head, preferred_element_type=dtype) / temperature  # [B, T, V]
  log_softmax = jax.nn.log_softmax(logits, axis=-1)
  logprobs = jnp.take_along_axis(log_softmax, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  if not compute_entropy:
    return logprobs
  entropy = -jnp.sum(jnp.exp(log_softmax) * log_softmax, axis=-1)  # [B, T]
  return logprobs, entropy


def _chunk_logits(h_c, head, dtype, inv_temperature):
  logits = jnp.dot(h_c, head, preferred_element_type=dtype)  # [C, V]
  return logits if inv_temperature == 1.0 else logits * inv_temperature


def _target_mask(targets_c, vocab_size):
  return jnp.arange(vocab_size, dtype=targets_c.dtype)[None, :] == targets_c[:, None]  # [C, V]


def _forward_scan(h, head, targets, compute_entropy, logit_dtype, inv_temperature):
  """Scan over chunks: h [N_c, C, D], targets [N_c, C] -> logp, lse, entropy, each [N_c, C]."""
  dtype = _compute_dtype(h, head, logit_dtype)
  vocab_size = head.shape[1]

  def body(_, xs):
    h_c, t_c = xs
    logits = _chunk_logits(h_c, head, dtype, inv_temperature)  # [C, V]
    lse = jax.nn.logsumexp(logits, axis=-1)  # [C]
    target_logit = jnp.sum(jnp.where(_target_mask(t_c, vocab_size), logits, 0.0), axis=-1)
    if compute_entropy:
      probs = jnp.exp(logits - lse[:, None])
      entropy = lse - jnp.sum(probs * logits, axis=-1)
    else:
      entropy = jnp.zeros_like(lse)
    return None, (target_logit - lse, lse, entropy)

  _, (logp, lse, entropy) = jax.lax.scan(body, None, (h, targets))
  return logp, lse, entropy


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _fused(h, head, targets, compute_entropy, logit_dtype, inv_temperature):
  logp, _, entropy = _forward_scan(h, head, targets, compute_entropy, logit_dtype, inv_temperature)
  return logp, entropy


def _fused_fwd(h, head, targets, compute_entropy, logit_dtype, inv_temperature):
  logp, lse, entropy = _forward_scan(h, head, targets, compute_entropy, logit_dtype, inv_temperature)
  # Residuals: the inputs and [N_c, C] per-token statistics; never logits.
  return (logp, entropy), (h, head, targets, lse, entropy)


def _fused_bwd(compute_entropy, logit_dtype, inv_temperature, residuals, cotangents):
  # compute_entropy: False, True (differentiable), or "value" (logged only: no backward term).
  h, head, targets, lse, entropy = residuals
  g_logp, g_entropy = cotangents  # [N_c, C] each
  dtype = _compute_dtype(h, head, logit_dtype)
  matmul_dtype = jnp.promote_types(h.dtype, head.dtype)
  vocab_size = head.shape[1]

  def body(d_head, xs):
    h_c, t_c, lse_c, ent_c, g_c, g_ent_c = xs
    logits = _chunk_logits(h_c, head, dtype, inv_temperature)  # [C, V] tempered, recomputed
    probs = jnp.exp(logits - lse_c[:, None])
    d_logits = g_c[:, None] * (_target_mask(t_c, vocab_size).astype(dtype) - probs)
    if compute_entropy is True:
      # H = lse - sum p z  =>  dH/dz = -p (z - lse + H) = -p (log p + H).
      d_logits = d_logits - g_ent_c[:, None] * probs * (logits - lse_c[:, None] + ent_c[:, None])
    if inv_temperature != 1.0:  # d/d raw logits = (d/d tempered logits) / T
      d_logits = d_logits * inv_temperature
    d_logits = d_logits.astype(matmul_dtype)
    d_h = jnp.dot(d_logits, head.T, preferred_element_type=dtype).astype(h.dtype)  # [C, D]
    d_head = d_head + jnp.dot(h_c.T.astype(matmul_dtype), d_logits, preferred_element_type=dtype)
    return d_head, d_h

  d_head0 = jnp.zeros(head.shape, dtype)
  xs = (h, targets, lse, entropy, g_logp.astype(dtype), g_entropy.astype(dtype))
  d_head, d_h = jax.lax.scan(body, d_head0, xs)
  d_targets = np.zeros(targets.shape, dtype=jax.dtypes.float0)
  return d_h, d_head.astype(head.dtype), d_targets


_fused.defvjp(_fused_fwd, _fused_bwd)


def token_logprobs(hidden: jax.Array, head: jax.Array, targets: jax.Array, *,
                   chunk_size: int = 1024, compute_entropy: bool = False, entropy_grad: bool = True,
                   logit_dtype=jnp.float32, temperature: float = 1.0):
  """log softmax(hidden @ head / temperature)[targets] without materialising [B, T, V] logits.

  hidden [B, T, D] (post-final-norm; bf16 is fine), head [D, V], targets [B, T] int.
  Returns logprobs [B, T] (fp32, or fp64 for fp64 inputs) and, with compute_entropy,
  (logprobs, entropy); `entropy_grad=False` makes the entropy a logged value only (its gradient
  is taken as zero, which saves its term in every backward chunk). Peak temporary memory is O(chunk_size * V) plus one fp32 [D, V] gradient
  accumulator in the backward. For reference-model log-probs simply call it outside any grad.
  """
  _check_inputs("token_logprobs", hidden, head, targets)
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
      or chunk_size < 1:
    raise ValueError(f"token_logprobs: chunk_size must be a positive int, got {chunk_size!r}")
  if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
    raise ValueError(f"token_logprobs: temperature must be a number > 0, got {temperature!r}")
  batch, length, dim = hidden.shape
  num_tokens = batch * length
  if num_tokens == 0:
    raise ValueError(f"token_logprobs: hidden has no tokens, shape {hidden.shape}")
  chunk = min(int(chunk_size), num_tokens)
  num_chunks = -(-num_tokens // chunk)
  pad = num_chunks * chunk - num_tokens

  h = hidden.reshape(num_tokens, dim)
  t = targets.reshape(num_tokens).astype(jnp.int32)
  if pad:
    h = jnp.pad(h, ((0, pad), (0, 0)))
    t = jnp.pad(t, (0, pad))
  # Strided chunks [num_chunks, chunk, ...]: the (sharded) token axis stays on the chunk rows.
  h = h.reshape(chunk, num_chunks, dim).swapaxes(0, 1)
  t = t.reshape(chunk, num_chunks).swapaxes(0, 1)

  mode = ("value" if not entropy_grad else True) if compute_entropy else False
  logp, entropy = _fused(h, head, t, mode, jnp.dtype(logit_dtype), 1.0 / float(temperature))

  def unchunk(x):  # [num_chunks, chunk] -> [B, T]
    return x.swapaxes(0, 1).reshape(-1)[:num_tokens].reshape(batch, length)

  if not compute_entropy:
    return unchunk(logp)
  return unchunk(logp), unchunk(entropy)
