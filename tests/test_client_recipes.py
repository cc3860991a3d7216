"""Client recipes: learned rules inside ordinary flax and optax programs.

Every case runs against the shipped rules (``ml.pretrained_names()``; of several that share a rule
class and configuration, and so the same code, only ``default`` or the first name), every rule
class at its initial meta-parameters, and ``optax.adamw`` as the control, which must pass the same
assertions.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import metalearn as ml
from metalearn import optimizers

NUM_STEPS = 100


def _distinct_shipped_rules():
  seen = {}
  for n in sorted(ml.pretrained_names(), key=lambda n: (n != "default", n)):
    rule = ml.pretrained_rule(n)[0]
    seen.setdefault((type(rule).__name__, json.dumps(rule.config(), sort_keys=True)), n)
  return sorted(seen.values())


CASES = ([f"pretrained:{n}" for n in _distinct_shipped_rules()]
         + [f"init:{n}" for n in sorted(optimizers.RULES)] + ["adamw"])


def make_tx(case, num_steps=NUM_STEPS):
  if case == "adamw":
    return optax.adamw(1e-3)
  kind, name = case.split(":")
  if kind == "pretrained":
    return ml.pretrained(name, num_steps=num_steps)
  rule = optimizers.RULES[name]()
  # Concrete theta even when called under a trace (nnx.eval_shape / nnx.jit below): a transformation
  # that nnx.Optimizer keeps must not close over values traced inside the trace.
  with jax.ensure_compile_time_eval():
    theta = rule.init_meta_params(jax.random.key(0))
  return rule.as_optax(theta, num_steps=num_steps)


@pytest.fixture(params=CASES)
def case(request):
  return request.param


def finite(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.result_type(x), jnp.inexact))


# -- sharded models --------------------------------------------------------------------------------


class ShardedMLP(nnx.Module):
  """The flax GSPMD guide's model: annotated params, a 'data' x 'model' mesh."""

  def __init__(self, rngs):
    init = nnx.initializers.lecun_normal()
    self.w1 = nnx.Param(nnx.with_partitioning(init, (None, "model"))(rngs.params(), (16, 32)))
    self.b1 = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros_init(), ("model",))(
        rngs.params(), (32,)))
    self.w2 = nnx.Param(nnx.with_partitioning(init, ("model", None))(rngs.params(), (32, 8)))
    self.scale = nnx.Param(jnp.ones(()))

  def __call__(self, x):
    return self.scale * (nnx.relu(x @ self.w1 + self.b1) @ self.w2)


def mesh(axis_type=AxisType.Auto):
  return jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)


@nnx.jit
def sharded_step(model, optimizer, x):
  loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - 1.0) ** 2))(model)
  optimizer.update(model, grads)
  return loss


def state_specs_follow_params(optimizer, model):
  """Every optimizer-state array shaped like a parameter is sharded like it; the rest replicated."""
  params = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  by_shape = {}
  for value in params.values():
    by_shape.setdefault(value.shape, set()).add(value.sharding.spec)
  for path, var in nnx.to_flat_state(nnx.state(optimizer.opt_state)):
    value = var.get_value()
    if value.ndim == 0:
      assert all(s is None for s in value.sharding.spec), (path, value.sharding)
    elif value.shape in by_shape:
      assert value.sharding.spec in by_shape[value.shape], (path, value.sharding.spec)


def test_sharded_model_with_eager_sharding(case):
  m = mesh()
  with jax.set_mesh(m), nnx.use_eager_sharding(True):
    model = ShardedMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make_tx(case), wrt=nnx.Param)
    state_specs_follow_params(optimizer, model)
    x = jax.device_put(jnp.ones((8, 16)), NamedSharding(m, P("data")))
    losses = [float(sharded_step(model, optimizer, x)) for _ in range(3)]
    assert losses[-1] < losses[0]
    state_specs_follow_params(optimizer, model)
    assert model.w1.get_value().sharding.spec == P(None, "model")


@pytest.mark.slow
def test_sharded_state_from_partition_specs(case):
  """The GSPMD guide's recipe: abstract init, nnx.get_partition_spec, jit with out_shardings."""
  m = mesh()

  def create():
    model = ShardedMLP(nnx.Rngs(0))
    return nnx.state((model, nnx.Optimizer(model, make_tx(case), wrt=nnx.Param)))

  with jax.set_mesh(m):
    abstract = nnx.eval_shape(create)
    specs = nnx.get_partition_spec(abstract)
    flat_specs = dict(nnx.to_flat_state(specs))
    for path, value in nnx.to_flat_state(abstract):
      spec = flat_specs[path]
      spec = spec.get_value() if isinstance(spec, nnx.Variable) else spec
      assert len(tuple(spec)) <= len(value.shape), (path, spec, value.shape)
    shardings = jax.tree.map(lambda s: NamedSharding(m, s), specs)
    state = jax.jit(create, out_shardings=shardings)()
  assert finite(state)
  model_state, opt_state = state[0], state[1]
  kernel = model_state["w1"].get_value()
  assert kernel.sharding.spec == P(None, "model")
  # The momenta of w1 carry its sharding.
  assert any(v.get_value().sharding.spec == P(None, "model")
             for _, v in nnx.to_flat_state(opt_state) if v.get_value().shape == kernel.shape)


@pytest.mark.slow
def test_update_hlo_has_no_all_gather(case):
  m = mesh()
  with jax.set_mesh(m), nnx.use_eager_sharding(True):
    model = ShardedMLP(nnx.Rngs(0))
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    tx = make_tx(case)
    opt_state = nnx.as_pure(tx.init(nnx.state(model, nnx.Param)))
    grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
    compiled = jax.jit(lambda g, s, p: tx.update(g, s, p)).lower(grads, opt_state, params).compile()
    hlo = compiled.as_text()
    assert "all-gather" not in hlo and "all-to-all" not in hlo


@pytest.mark.slow
def test_explicit_axis_mesh(case):
  with jax.set_mesh(mesh(AxisType.Explicit)):
    params = {"w": jax.device_put(jnp.ones((16, 32)), P(None, "model")),
              "b": jax.device_put(jnp.zeros((32,)), P("model")), "s": jnp.ones(())}
    tx = make_tx(case)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert updates["w"].sharding.spec == P(None, "model")
    assert jax.typeof(updates["b"]).sharding.spec == P("model")
    assert finite((updates, state))


# -- any pytree, any combinator --------------------------------------------------------------------


class Tower(nnx.Module):

  def __init__(self, rngs):
    self.body = nnx.Linear(8, 16, rngs=rngs)
    self.head = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.body(x)))


def tower_loss(model, x):
  return jnp.mean((model(x) - jnp.sum(x, axis=1, keepdims=True)) ** 2)


@nnx.jit
def tower_step(model, optimizer, x):
  loss, grads = nnx.value_and_grad(tower_loss)(model, x)
  optimizer.update(model, grads, loss=loss)
  return loss


def kernels(model):
  return {name: np.array(getattr(model, name).kernel.get_value()) for name in ("body", "head")}


@pytest.mark.parametrize("combinator", ["partition", "multi_transform", "masked"])
def test_combinators_in_nnx_optimizer(case, combinator):
  """The flax cookbook's per-parameter optimizers: the rule for the body, another for the head."""
  model = Tower(nnx.Rngs(0))
  labels = nnx.map_state(lambda path, _: "body" if path[0] == "body" else "head",
                         nnx.state(model, nnx.Param))
  if combinator == "masked":
    mask = nnx.map_state(lambda path, _: path[0] == "body", nnx.state(model, nnx.Param))
    tx = optax.chain(optax.masked(make_tx(case), mask),
                     optax.masked(optax.set_to_zero(), jax.tree.map(lambda m: not m, mask)))
  else:
    combine = optax.partition if combinator == "partition" else optax.multi_transform
    tx = combine({"body": make_tx(case), "head": optax.set_to_zero()}, labels)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = kernels(model)
  x = jax.random.normal(jax.random.key(1), (32, 8))
  for _ in range(3):
    tower_step(model, optimizer, x)
  after = kernels(model)
  assert not np.array_equal(before["body"], after["body"])
  np.testing.assert_array_equal(before["head"], after["head"])


def test_tuples_lists_none_and_float_leaves(case):
  """Updates do not depend on how the params are arranged in the tree."""
  k = jax.random.split(jax.random.key(2), 3)
  w, b, c = jax.random.normal(k[0], (4, 3)), jax.random.normal(k[1], (3,)), 0.5
  nested = {"pair": (w, b), "list": [c], "none": None, "masked": optax.MaskedNode()}
  flat = {"w": w, "b": b, "c": jnp.asarray(c, jnp.float32)}
  grads_flat = {"w": jnp.cos(w), "b": jnp.sin(b), "c": jnp.asarray(0.3)}
  grads_nested = {"pair": (grads_flat["w"], grads_flat["b"]), "list": [grads_flat["c"]],
                  "none": None, "masked": optax.MaskedNode()}
  tx = make_tx(case)
  s_nested, s_flat = tx.init(nested), tx.init(flat)
  for _ in range(2):
    u_nested, s_nested = tx.update(grads_nested, s_nested, nested)
    u_flat, s_flat = tx.update(grads_flat, s_flat, flat, unknown_extra=1)  # extras ignored
  assert jax.tree.structure(u_nested) == jax.tree.structure(grads_nested)
  pairs = [(u_nested["pair"][0], u_flat["w"]), (u_nested["pair"][1], u_flat["b"]),
           (u_nested["list"][0], u_flat["c"])]
  for a, bb in pairs:
    np.testing.assert_allclose(a, bb, rtol=1e-6, atol=1e-12)
  assert float(optax.apply_updates(nested, u_nested)["list"][0]) != c


@pytest.mark.parametrize("empty", [{}, (), [], None, {"a": None, "b": optax.MaskedNode()}])
def test_empty_params(case, empty):
  if case == "adamw" and empty is None:
    pytest.skip("optax.adamw's weight decay fails on params=None")
  tx = make_tx(case)
  state = tx.init(empty)
  updates, _ = tx.update(empty, state, empty)
  assert jax.tree.structure(updates) == jax.tree.structure(empty)


def test_grads_shaped_unlike_params_name_the_leaf(case):
  if case == "adamw":
    pytest.skip("optax reports this as a broadcasting error")
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  tx = make_tx(case)
  with pytest.raises(ValueError, match=r"\['b'\].*shape \(4,\)"):
    tx.update({"w": jnp.ones((4, 3)), "b": jnp.ones(4)}, tx.init(params), params)


# -- traceable construction ------------------------------------------------------------------------


def test_built_under_eval_shape_and_jit(case):
  abstract = nnx.eval_shape(lambda: nnx.Optimizer(Tower(nnx.Rngs(0)), make_tx(case),
                                                  wrt=nnx.Param))
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(nnx.state(abstract)))

  @nnx.jit
  def create():
    model = Tower(nnx.Rngs(0))
    return model, nnx.Optimizer(model, make_tx(case), wrt=nnx.Param)

  model, optimizer = create()
  before = kernels(model)
  for _ in range(3):
    loss = tower_step(model, optimizer, jnp.ones((4, 8)))
  assert np.isfinite(float(loss)) and int(optimizer.step[...]) == 3
  assert not np.array_equal(before["body"], kernels(model)["body"])


# -- zero in, zero out -----------------------------------------------------------------------------


class Bag(nnx.Module):

  def __init__(self, rngs):
    self.embed = nnx.Embed(1000, 16, rngs=rngs)
    self.out = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, ids):
    return self.out(self.embed(ids).mean(axis=1))


@nnx.jit
def bag_step(model, optimizer, ids, y):
  loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(ids)[:, 0] - y) ** 2))(model)
  optimizer.update(model, grads, loss=loss)
  return loss


def test_unused_embedding_rows_stay_put(case):
  """1000 rows, 50 ever used: the other 950 move by no more than AdamW's weight decay."""
  model = Bag(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, make_tx(case), wrt=nnx.Param)
  table = np.array(model.embed.embedding.get_value())
  rng = np.random.default_rng(0)
  for _ in range(100):
    ids = rng.integers(0, 50, (16, 4))
    bag_step(model, optimizer, jnp.asarray(ids), jnp.asarray(ids.mean(1) / 50.0, jnp.float32))
  moved = np.abs(np.array(model.embed.embedding.get_value()) - table)
  relative = moved.max(axis=1) / np.abs(table).max(axis=1)
  assert relative[:50].min() > 1e-3  # the used rows train
  assert relative[50:].max() <= 2e-5  # AdamW(1e-3, wd=1e-4): ~1e-5 in 100 steps


# -- dtypes ----------------------------------------------------------------------------------------


def test_float32_arithmetic_under_x64_inside_multi_steps(case):
  with jax.enable_x64(True):
    params = {"w": jnp.ones((4, 3), jnp.float32), "h": jnp.ones((3,), jnp.bfloat16)}
    tx = optax.MultiSteps(make_tx(case), every_k_schedule=2)  # lax.cond needs stable dtypes
    state = tx.init(params)
    dtypes = [x.dtype for x in jax.tree.leaves(state)]
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, loss=jnp.asarray(1.0, jnp.float64)))
    for i in range(3):
      grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1 * (i + 1)), params)
      updates, state = step(grads, state, params)
      params = optax.apply_updates(params, updates)
    assert [x.dtype for x in jax.tree.leaves(state)] == dtypes
    assert params["w"].dtype == jnp.float32 and params["h"].dtype == jnp.bfloat16
    if case.startswith("init:"):
      rule = optimizers.RULES[case.split(":")[1]]()
      theta = rule.init_meta_params(jax.random.key(0))
      assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(theta))


# -- contained faults ------------------------------------------------------------------------------


def warm_state(tx, params, steps=3):
  state = tx.init(params)
  rng = np.random.default_rng(1)
  for _ in range(steps):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    _, state = tx.update(grads, state, params)
  return state


def test_one_bad_gradient_element_is_contained(case):
  """NaN, Inf, 1e30 or a 1000x element, at the first step or later: it changes at most its own
  update (AdamW's neighbours stay put too), and a learned rule's state stays finite."""
  k = jax.random.split(jax.random.key(3), 3)
  params = {"w": jax.random.normal(k[0], (32, 16)) * 0.2, "b": jnp.zeros((16,))}
  clean = {"w": jax.random.normal(k[1], (32, 16)), "b": jax.random.normal(k[2], (16,))}
  tx = make_tx(case)
  update = jax.jit(lambda g, s: tx.update(g, s, params, loss=jnp.asarray(1.0)))
  others = np.ones((32, 16), bool)
  others[5, 7] = False
  for state in (tx.init(params), warm_state(tx, params)):
    u_clean, _ = update(clean, state)
    for bad in (np.nan, np.inf, -np.inf, 1e30, 1000 * float(jnp.max(jnp.abs(clean["w"])))):
      u_dirty, s_dirty = update({**clean, "w": clean["w"].at[5, 7].set(bad)}, state)
      # Per-tensor statistics may move by a hair (HyperparamNet's robust scales), never more.
      atol = 1e-3 * float(jnp.max(jnp.abs(u_clean["w"])))
      np.testing.assert_allclose(np.asarray(u_dirty["w"])[others],
                                 np.asarray(u_clean["w"])[others], rtol=0.02, atol=atol)
      np.testing.assert_allclose(u_dirty["b"], u_clean["b"], rtol=0.02, atol=atol)
      if case == "adamw":  # the control: its own element (and state) may turn NaN or Inf
        continue
      assert finite((u_dirty, s_dirty)), bad
      if case != "init:sgdm":  # an adaptive rule's own step stays bounded (SGD's grows with g)
        assert abs(float(u_dirty["w"][5, 7])) <= 20 * float(jnp.max(jnp.abs(u_clean["w"])))
