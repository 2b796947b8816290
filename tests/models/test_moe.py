"""MoE routing and dispatch: backends agree, routing semantics (the peer pitfalls), bias update."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.moe import MoE, dispatch, route, sequence_balance_loss, update_router_bias

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, ffn_dim=64, n_routed_experts=8,
                  n_experts_per_tok=2, moe_ffn_dim=16, router_score="sigmoid", router_bias=True, n_group=4,
                  topk_group=2, routed_scaling_factor=2.5, n_shared_experts=1)


def _np_route(logits, bias, cfg):
  """Direct NumPy transcription of DeepSeek-V3's router (HF DeepseekV3TopkRouter)."""
  s = 1 / (1 + np.exp(-logits))
  choice = s + bias
  E, G = cfg.n_routed_experts, cfg.n_group
  gs = np.sort(choice.reshape(-1, G, E // G), -1)[..., -2:].sum(-1)
  keep = np.argsort(-gs, -1)[:, :cfg.topk_group]
  mask = np.zeros_like(gs, bool)
  np.put_along_axis(mask, keep, True, -1)
  choice = np.where(np.repeat(mask, E // G, -1), choice, -np.inf)
  idx = np.argsort(-choice, -1)[:, :cfg.n_experts_per_tok]
  w = np.take_along_axis(s, idx, -1)
  w = w / (w.sum(-1, keepdims=True) + 1e-20) * cfg.routed_scaling_factor
  return w, idx


def test_route_matches_numpy_and_bias_only_chooses():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(64, 8)).astype(np.float32)
  bias = rng.normal(size=(8,)).astype(np.float32)
  r = route(jnp.asarray(logits), CFG, jnp.asarray(bias))
  w_ref, idx_ref = _np_route(logits, bias, CFG)
  order = np.argsort(np.asarray(r.experts), -1)
  np.testing.assert_array_equal(np.take_along_axis(np.asarray(r.experts), order, -1), np.sort(idx_ref, -1))
  ro = np.argsort(idx_ref, -1)
  np.testing.assert_allclose(np.take_along_axis(np.asarray(r.weights), order, -1),
                             np.take_along_axis(w_ref, ro, -1), rtol=1e-5)
  # Weights come from the unbiased sigmoid scores, not the biased choice scores.
  s = 1 / (1 + np.exp(-logits))
  raw = np.take_along_axis(s, np.asarray(r.experts), -1)
  np.testing.assert_allclose(np.asarray(r.weights), raw / raw.sum(-1, keepdims=True) * 2.5, rtol=1e-5)
  # Only experts of the topk_group best groups are ever chosen.
  groups = np.asarray(r.experts) // 2
  assert all(len(set(g)) <= CFG.topk_group for g in groups)


def _dispatch_inputs(seed: int, N: int, E: int, D: int = 32, F: int = 16):
  """Tokens x [N, D], expert weights (wg, wu [E, D, F], wd [E, F, D]), their routing, a token mask."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
  wg, wu = (jnp.asarray(rng.normal(size=(E, D, F)) * 0.1, jnp.float32) for _ in range(2))
  wd = jnp.asarray(rng.normal(size=(E, F, D)) * 0.1, jnp.float32)
  cfg = CFG if E == CFG.n_routed_experts else ModelConfig(**{**CFG.__dict__, "n_routed_experts": E})
  r = route(jnp.asarray(rng.normal(size=(N, E)), jnp.float32), cfg)
  return x, wg, wu, wd, r, jnp.asarray(rng.random(N) > 0.2)


@pytest.mark.parametrize("backend,cf", [("blocks", None), ("sort", None), ("ragged", None), ("sort", 8.0)])
def test_backends_equal_dense_oracle(backend, cf):
  x, wg, wu, wd, r, mask = _dispatch_inputs(seed=1, N=40, E=8)
  ref, _ = dispatch(x, r, wg, wu, wd, mask, backend="dense")
  out, dropped = dispatch(x, r, wg, wu, wd, mask, backend=backend, capacity_factor=cf, block=4)  # several blocks per expert
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
  assert int(dropped) == 0
  assert np.all(np.asarray(out)[~np.asarray(mask)] == 0)  # padding tokens produce nothing
  # gradients agree too
  f = lambda be: lambda a, b, c, d: (dispatch(a, r, b, c, d, mask, backend=be, capacity_factor=cf, block=4)[0] ** 2).sum()
  g_ref = jax.jit(jax.grad(f("dense"), argnums=(0, 1, 2, 3)))(x, wg, wu, wd)
  g = jax.jit(jax.grad(f(backend), argnums=(0, 1, 2, 3)))(x, wg, wu, wd)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_capacity_drops_are_counted():
  rng = np.random.default_rng(2)
  N, D, F, E = 32, 8, 4, 8
  x = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
  w = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((E, D, F), (E, D, F), (E, F, D))]
  logits = np.full((N, E), -5.0, np.float32)
  logits[:, 0] = 5  # everyone wants expert 0 and 1
  logits[:, 1] = 4
  r = route(jnp.asarray(logits), CFG.replace(n_group=1, topk_group=1, router_bias=False))
  _, dropped = dispatch(x, r, *w, jnp.ones(N, bool), backend="sort", capacity_factor=1.0)
  C = int(np.ceil(1.0 * N * 2 / E))
  assert int(dropped) == 2 * (N - C)


def test_every_expert_matters_and_gets_gradient():
  cfg = CFG.replace(router_bias=False, n_group=1, topk_group=1)
  moe = MoE(cfg, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (4, 16, cfg.d_model))
  mask = jnp.ones((4, 16), bool)
  graphdef, state = nnx.split(moe)
  fwd = jax.jit(lambda st: nnx.merge(graphdef, st)(x, mask))
  y0, aux = fwd(state)
  assert float(aux["load"].sum()) == 4 * 16 * 2
  assert np.all(np.asarray(aux["load"]) > 0), "random routing should hit every expert"
  g = jax.jit(jax.grad(lambda st: (fwd(st)[0] ** 2).sum()))(state)
  for name in ("w_gate", "w_up", "w_down"):
    per_expert = np.abs(np.asarray(g[name][...])).reshape(cfg.n_routed_experts, -1).sum(-1)
    assert np.all(per_expert > 0), f"{name}: an expert got no gradient"
  assert np.abs(np.asarray(g["gate"][...])).sum() > 0  # the router is trained through the weights
  # Perturbing expert e changes exactly the tokens routed to e.
  r = route(jnp.dot(x.reshape(-1, cfg.d_model), moe.gate[...]), cfg)
  for e in (0, 5):
    st = jax.tree.map(lambda a: a, state)
    st["w_down"] = st["w_down"].replace(state["w_down"][...].at[e].add(1.0))
    y1, _ = fwd(st)
    changed = np.abs(np.asarray(y1 - y0)).reshape(-1, cfg.d_model).max(-1) > 1e-6
    routed = np.any(np.asarray(r.experts) == e, -1)
    np.testing.assert_array_equal(changed, routed)


def test_bias_update_rule_and_global_load():
  bias = jnp.zeros((2, 4))
  load = jnp.asarray([[10.0, 0, 5, 5], [1, 1, 1, 1]])
  new = update_router_bias(bias, load, 0.01)
  np.testing.assert_allclose(np.asarray(new), [[-0.01, 0.01, 0, 0], [0, 0, 0, 0]])


def test_sequence_balance_loss_formula():
  rng = np.random.default_rng(3)
  B, T, E, K = 2, 6, 4, 2
  scores = rng.random((B, T, E)).astype(np.float32)
  experts = np.stack([rng.permutation(E)[:K] for _ in range(B * T)]).reshape(B, T, K)
  mask = np.ones((B, T), bool)
  mask[1, 4:] = False
  got = float(sequence_balance_loss(jnp.asarray(scores), jnp.asarray(experts), jnp.asarray(mask), E, K))
  ref = []
  for b in range(B):
    t = mask[b].sum()
    f = np.array([(experts[b][mask[b]] == i).any(-1).sum() for i in range(E)]) * E / (K * t)
    p = (scores[b][mask[b]] / scores[b][mask[b]].sum(-1, keepdims=True)).mean(0)
    ref.append((f * p).sum())
  np.testing.assert_allclose(got, np.mean(ref), rtol=1e-5)


# ------------------------------------------------------------------ expert parallelism (all-to-all)

def _placed(mesh, *arrays, specs):
  from jax.sharding import NamedSharding

  return [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(arrays, specs)]


@pytest.mark.parametrize("shape", [{"expert": 8}, {"data": 2, "expert": 4}])
def test_alltoall_equals_dense_oracle_with_gradients(devices8, shape):
  from jax.sharding import PartitionSpec as P

  from r1jax.parallel.mesh import make_mesh

  x, wg, wu, wd, r, mask = _dispatch_inputs(seed=2, N=64, E=16)
  mesh = make_mesh(shape)
  rows, w_spec = P(("data", "fsdp", "expert"), None), P("expert", None, None)
  with jax.set_mesh(mesh):
    x, wg, wu, wd = _placed(mesh, x, wg, wu, wd, specs=(rows, w_spec, w_spec, w_spec))
    run = lambda be, cf=None: jax.jit(lambda *a: dispatch(a[0], r, *a[1:], mask, backend=be, capacity_factor=cf))
    ref, _ = run("dense")(x, wg, wu, wd)
    out, dropped = run("alltoall")(x, wg, wu, wd)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
    assert int(dropped) == 0
    loss = lambda be: lambda *a: (dispatch(a[0], r, *a[1:], mask, backend=be)[0] ** 2).sum()
    g_ref = jax.jit(jax.grad(loss("dense"), argnums=(0, 1, 2, 3)))(x, wg, wu, wd)
    g = jax.jit(jax.grad(loss("alltoall"), argnums=(0, 1, 2, 3)))(x, wg, wu, wd)
    for a, b in zip(g, g_ref):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # A capacity below the busiest shard's load drops (and counts) assignments instead of growing.
    _, dropped = run("alltoall", 0.25)(x, wg, wu, wd)
    assert int(dropped) > 0


def test_alltoall_moe_compiles_to_all_to_all_without_gathering_tokens(devices8):
  """The expert = 8 MoE layer (routing, dispatch, shared expert, loads): all-to-all, and no
  all-gather at all (GSPMD's expert-sharded einsum gathers every token to every shard)."""
  import dataclasses

  from jax.sharding import PartitionSpec as P

  from r1jax.parallel.mesh import make_mesh

  mesh = make_mesh({"expert": 8})
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(8, 8, CFG.d_model)), jnp.float32)
  m = jnp.asarray(rng.random((8, 8)) > 0.2)
  cfg = dataclasses.replace(CFG, n_routed_experts=16, moe_backend="alltoall", seq_aux_loss_coef=1e-3)
  outs = {}
  for backend in ("alltoall", "dense"):
    with jax.set_mesh(mesh):
      moe = MoE(dataclasses.replace(cfg, moe_backend=backend), rngs=nnx.Rngs(0))
      graphdef, state = nnx.split(moe)
      fn = jax.jit(lambda s, x, m: nnx.merge(graphdef, s)(x, m))
      xs, ms = _placed(mesh, x, m, specs=(P(("data", "fsdp", "expert")),) * 2)
      outs[backend] = jax.device_get(fn(state, xs, ms))
      hlo = fn.lower(state, xs, ms).compile().as_text()
    if backend == "alltoall":
      assert hlo.count("all-to-all(") >= 2, "dispatch and return"
      assert hlo.count("all-gather(") == 0, [l for l in hlo.splitlines() if "all-gather(" in l][:3]
  (y, aux), (y_ref, aux_ref) = outs["alltoall"], outs["dense"]
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  np.testing.assert_array_equal(aux["load"], aux_ref["load"])
  assert float(aux["balance"]) == pytest.approx(float(aux_ref["balance"]), rel=1e-6)
