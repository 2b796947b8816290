"""Offline reasoning tasks: verifiers against brute force, disjoint splits, seeds, difficulty."""
import itertools
import json
import re
from fractions import Fraction

import numpy as np
import pytest

from r1jax.data import tasks, templates
from r1jax.data.tasks import addition, arithmetic, base, countdown, cot, knights_knaves
from r1jax.rewards import registry, verifiers


def wrap(ans: str) -> str:
  return f"<think> working </think> <answer>{ans}</answer>"


def verify(completion, answer, task: str) -> float:
  """The verifier of `task`: the per-item function of the reward registered under its name."""
  return registry.build(task).verify(completion, answer)


# --- brute-force references (independent of the task modules) ----------------------------------


def countdown_brute_force(numbers, target):
  """Some expression over a sub-multiset of `numbers` equal to `target`, or None."""
  start = [(Fraction(x), str(x)) for x in numbers]

  def search(terms):
    for value, expr in terms:
      if value == target:
        return expr
    for i, j in itertools.permutations(range(len(terms)), 2):
      (a, ea), (b, eb) = terms[i], terms[j]
      rest = [t for k, t in enumerate(terms) if k not in (i, j)]
      options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
      if b != 0:
        options.append((a / b, f"({ea} / {eb})"))
      for v, e in options:
        found = search(rest + [(v, e)])
        if found:
          return found
    return None

  return search(start)


def kk_brute_force(statements):
  """All consistent assignments, by direct transcription of the puzzle rules."""
  def says(stmt, k):
    kind = stmt[0]
    if kind == "is":
      return k[stmt[1]] is stmt[2]
    if kind == "both":
      return k[stmt[1]] is stmt[3] and k[stmt[2]] is stmt[3]
    if kind == "either":
      return k[stmt[1]] is stmt[3] or k[stmt[2]] is stmt[3]
    if kind == "same":
      return k[stmt[1]] is k[stmt[2]]
    return k[stmt[1]] is not k[stmt[2]]

  sols = []
  for k in itertools.product([True, False], repeat=len(statements)):
    if all(says(s, k) == k[i] for i, s in enumerate(statements)):
      sols.append(k)
  return sols


# --- countdown ----------------------------------------------------------------------------------


def test_countdown_instances_are_solvable_and_verifier_accepts_brute_force():
  items = countdown.generate("train", 25, seed=3, difficulty=1)
  for it in items:
    nums, target = it["answer"]["numbers"], it["answer"]["target"]
    assert it["prompt"].count(str(target)) >= 1 and len(nums) == 3
    expr = countdown_brute_force(nums, target)
    assert expr is not None
    assert verifiers.verify_countdown(wrap(expr), it["answer"]) == 1.0
    assert verifiers.verify_countdown(wrap(it["solution"]), it["answer"]) == 1.0
    assert verifiers.verify_countdown(wrap(it["solution"]), json.dumps(it["answer"])) == 1.0
    assert verifiers.verify_countdown(wrap(f"{expr} + 1"), it["answer"]) == 0.0  # wrong value


def test_countdown_verifier_rejects_misuse():
  ans = {"target": 24, "numbers": [4, 6, 1, 3]}
  assert verifiers.verify_countdown(wrap("4 * 6"), ans) == 1.0              # subsets are allowed
  assert verifiers.verify_countdown(wrap("(6 - 1 - 3) * 12"), ans) == 0.0  # 12 is not given
  assert verifiers.verify_countdown(wrap("4 * 6 * 1 * 1"), ans) == 0.0      # 1 used twice
  assert verifiers.verify_countdown(wrap("6 / (1 - 3/4)"), ans) == 1.0       # exact fractions: 6/(1/4)
  assert verifiers.verify_countdown(wrap("6 × 4"), ans) == 1.0               # unicode operators
  assert verifiers.verify_countdown(wrap("4 * 6 = 24"), ans) == 1.0
  assert verifiers.verify_countdown(wrap("-(1 - 4 * 6) - 1"), ans) == 0.0    # no unary minus
  assert verifiers.verify_countdown(wrap("4 ** 2 + 6 + 1 + 1"), ans) == 0.0  # no powers
  assert verifiers.verify_countdown(wrap("__import__('os')"), ans) == 0.0
  assert verifiers.verify_countdown(wrap("6 / (3 - 3)"), ans) == 0.0
  assert verifiers.verify_countdown("4 * 6", ans) == 0.0                     # no answer tag
  assert verifiers.verify_countdown(wrap("4 * 6") + " <answer>1+3</answer>", ans) == 0.0  # last tag wins
  assert verifiers.verify_countdown(wrap("1+3") + " <answer>4*6</answer>", ans) == 1.0


def test_countdown_random_expressions_agree_with_direct_evaluation():
  """Random expressions over random numbers: verify == (value equals target) and numbers ok."""
  rng = np.random.default_rng(0)
  for _ in range(200):
    nums = [int(x) for x in rng.integers(1, 20, size=4)]
    used = [int(x) for x in rng.choice(nums + [21], size=3)]
    ops = rng.choice(["+", "-", "*"], size=2)
    expr = f"{used[0]} {ops[0]} {used[1]} {ops[1]} {used[2]}"
    value = eval(expr)  # trusted: built here from ints and + - *  # noqa: S307
    target = int(rng.choice([value, value + 1]))
    ok_numbers = all(used.count(x) <= nums.count(x) for x in set(used))
    want = 1.0 if (value == target and ok_numbers) else 0.0
    assert verifiers.verify_countdown(wrap(expr), {"target": target, "numbers": nums}) == want


# --- arithmetic ---------------------------------------------------------------------------------


def schoolbook_has_carry(a, b, op):
  digits = lambda x: [int(c) for c in str(x)[::-1]]  # noqa: E731
  if op == "+":
    da, db, c = digits(a), digits(b), 0
    for i in range(max(len(da), len(db))):
      s = (da[i] if i < len(da) else 0) + (db[i] if i < len(db) else 0) + c
      if s >= 10:
        return True
      c = 0
    return False
  partials = []
  for shift, y in enumerate(digits(b)):
    carry, out = 0, []
    for x in digits(a):
      p = x * y + carry
      if p >= 10:
        return True
      out.append(p)
    partials.append(int("".join(map(str, out[::-1]))) * 10**shift)
  total = 0
  for p in partials:
    if schoolbook_has_carry(total, p, "+"):
      return True
    total += p
  return False


@pytest.mark.parametrize("difficulty", [1, 3])
def test_arithmetic_answers_and_carries(difficulty):
  items = arithmetic.generate("train", 60, seed=1, difficulty=difficulty)
  for it in items:
    a, b = it["operands"]
    want = a + b if it["op"] == "+" else a * b
    assert it["answer"] == str(want)
    assert len(str(a)) == difficulty + 1
    assert schoolbook_has_carry(a, b, it["op"])
    assert verifiers.verify_arithmetic(wrap(str(want)), it["answer"]) == 1.0
    assert verifiers.verify_arithmetic(wrap(f"{want:,}"), it["answer"]) == 1.0
    assert verifiers.verify_arithmetic(wrap(f"{a} {it['op']} {b} = {want}"), it["answer"]) == 1.0
    assert verifiers.verify_arithmetic(wrap(str(want + 1)), it["answer"]) == 0.0
    assert verifiers.verify_arithmetic(wrap(str(want) + "7"), it["answer"]) == 0.0
  assert {it["op"] for it in items} == {"+", "*"}
  assert verifiers.verify_arithmetic("no tags " + items[0]["answer"], items[0]["answer"]) == 0.0
  assert verifiers.verify_arithmetic(wrap("twelve"), "12") == 0.0


# --- knights and knaves -------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_knights_knaves_unique_solution_matches_brute_force(difficulty):
  for it in knights_knaves.generate("train", 15, seed=2, difficulty=difficulty):
    statements = [tuple(s) for s in it["statements"]]
    sols = kk_brute_force(statements)
    assert len(sols) == 1 and len(it["names"]) == difficulty + 1
    want = {n: ("knight" if k else "knave") for n, k in zip(it["names"], sols[0])}
    assert it["answer"] == want
    claims = [f"{n} is a {r}" for n, r in want.items()]
    assert verifiers.verify_knights_knaves(wrap(", ".join(claims)), it["answer"]) == 1.0
    assert verifiers.verify_knights_knaves(wrap(" and ".join(reversed(claims))), it["answer"]) == 1.0
    flipped = claims[:-1] + [claims[-1].replace("knight", "X").replace("knave", "knight")
                             .replace("X", "knave")]
    assert verifiers.verify_knights_knaves(wrap(", ".join(flipped)), it["answer"]) == 0.0
    assert verifiers.verify_knights_knaves(wrap(", ".join(claims[:-1])), it["answer"]) == 0.0
    assert verifiers.verify_knights_knaves(wrap(", ".join(claims + flipped[-1:])), it["answer"]) == 0.0


def test_knights_knaves_prompt_states_every_statement():
  it = knights_knaves.generate("test", 1, seed=0, difficulty=3)[0]
  for name in it["names"]:
    assert f"{name} says:" in it["prompt"]


# --- all tasks: splits, seeds, registry, CoT -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(tasks.REASONING_TASKS))
def test_splits_are_disjoint_and_generation_is_seeded(name):
  mod = tasks.get_task(name)
  train = mod.generate("train", 150, seed=0, difficulty=1)
  test = mod.generate("test", 30, seed=0, difficulty=1)
  train_keys, test_keys = {x["key"] for x in train}, {x["key"] for x in test}
  assert len(train_keys) == 150 and len(test_keys) == 30
  assert not train_keys & test_keys
  assert not {x["prompt"] for x in train} & {x["prompt"] for x in test}
  assert all(base.split_of(k) == "test" for k in test_keys)
  other_seed = mod.generate("train", 150, seed=1, difficulty=1)
  assert not {x["key"] for x in other_seed} & test_keys
  assert mod.generate("train", 150, seed=0, difficulty=1) == train
  assert [x["prompt"] for x in other_seed] != [x["prompt"] for x in train]
  for x in train[:5]:
    assert x["task"] == name and x["split"] == "train" and x["language"] == "en"
  with pytest.raises(ValueError, match="difficulty"):
    mod.generate("train", 1, seed=0, difficulty=0)
  with pytest.raises(ValueError, match="split"):
    mod.generate("valid", 1, seed=0, difficulty=1)


def test_difficulty_knob_grows_problems():
  cd = [len(countdown.generate("train", 3, seed=0, difficulty=d)[0]["answer"]["numbers"])
        for d in (1, 2, 3)]
  assert cd == [3, 4, 5]
  kk = [len(knights_knaves.generate("train", 3, seed=0, difficulty=d)[0]["names"]) for d in (1, 4)]
  assert kk == [2, 5]


def test_small_problem_space_is_a_clear_error():
  with pytest.raises(ValueError, match="distinct test problems"):
    arithmetic.generate("test", 100000, seed=0, difficulty=1, ops=("+",))


def test_registry_dispatch():
  it = arithmetic.generate("train", 1, seed=0)[0]
  assert verify(wrap(it["answer"]), it["answer"], "arithmetic") == 1.0
  with pytest.raises(KeyError, match="unknown task"):
    tasks.get_task("sudoku")


@pytest.mark.parametrize("name", sorted(tasks.REASONING_TASKS))
def test_cot_traces_reach_the_verified_answer(name):
  rng = np.random.default_rng(0)
  items = tasks.get_task(name).generate("train", 40, seed=4, difficulty=2)
  waits = 0
  for it in items:
    trace = cot.TRACE_WRITERS[name](it, rng, wait_prob=0.5)
    response = f"<think>\n{trace['reasoning']}\n</think>\n\n{trace['summary']} " \
               f"<answer>{trace['answer']}</answer>"
    assert verify(response, it["answer"], name) == 1.0
    waits += "Wait, " in trace["reasoning"]
  assert 5 <= waits <= 35  # corrections happen, but not always


def test_arithmetic_trace_corrections_are_real():
  """With a slip the trace states a wrong intermediate result, then the right one."""
  rng = np.random.default_rng(1)
  it = {"operands": [478, 356], "op": "+"}
  trace = cot.arithmetic_trace(it, rng, wait_prob=1.0)
  lines = trace["reasoning"].split("\n")
  wait = next(i for i, line in enumerate(lines) if line.startswith("Wait"))
  assert "834" not in lines[wait - 2] and "834" in lines[wait + 1]
  assert trace["answer"] == "834"


# --- short traces (the CPU demo's cold-start style) ----------------------------------------------

_EQUATION = re.compile(r"(\d+(?: [-+×÷] \d+)+) = (\d+)")


def _holds(lhs: str, rhs: str) -> bool:
  tokens = lhs.split()
  value = int(tokens[0])
  for op, x in zip(tokens[1::2], map(int, tokens[2::2])):
    if op == "÷":
      if value % x:
        return False
      value //= x
    else:
      value = {"+": value + x, "-": value - x, "×": value * x}[op]
  return value == int(rhs)


@pytest.mark.parametrize("name", ["arithmetic", "addition"])
@pytest.mark.parametrize("difficulty", [1, 2, 4])
def test_short_traces_state_only_true_equations_and_reach_the_answer(name, difficulty):
  rng = np.random.default_rng(difficulty)
  write = cot.trace_writer(name, "short")
  waits = 0
  for it in tasks.get_task(name).generate("train", 40, seed=3, difficulty=difficulty):
    trace = write(it, rng, wait_prob=0.5)
    text = trace["reasoning"]
    for lhs, rhs in _EQUATION.findall(text):  # every stated equation is true, the slip's too
      assert _holds(lhs, rhs), (lhs, rhs, text)
    for line in text.split("\n"):
      m = re.search(r"= (\d+), write (\d+) carry (\d+)$", line)
      if m:  # the written digit and the carry out follow from the column sum
        assert (int(m[1]) % 10, int(m[1]) // 10) == (int(m[2]), int(m[3])), line
    response = templates.r1_response(text, trace["summary"], trace["answer"])
    assert verify(response, it["answer"], name) == 1.0
    assert len(text) < 400  # short: a handful of lines
    if "Wait, let me re-check." in text:
      waits += 1
      lines = text.split("\n")
      wait = lines.index("Wait, let me re-check.")
      wrong = int(lines[wait - 2].split()[-1])
      assert lines[wait - 2].startswith("result ") and wrong != int(it["answer"])
      assert lines[-2] == f"result {it['answer']}" and lines[-1].endswith(", ok")
  if name == "addition":
    assert 5 <= waits <= 35


def test_short_trace_slip_forgets_exactly_one_carry():
  it = {"operands": [478, 356], "op": "+"}
  trace = cot.short_arithmetic_trace(it, np.random.default_rng(0), wait_prob=1.0)
  lines = trace["reasoning"].split("\n")
  # 8+6=14 (carry 1), 7+5+1=13 (carry 1), 4+3+1=8: one column is written without its carry-in.
  assert lines[1] == "8 + 6 = 14, write 4 carry 1"
  carried = lines[2:4]  # both columns have a carry-in of 1; exactly one is written without it
  assert sorted(line.count("+") for line in carried) == [1, 2]
  wait = lines.index("Wait, let me re-check.")
  assert "I forgot the carry, so the result is 834" in lines[wait + 1] and trace["answer"] == "834"


def test_trace_writer_styles_and_errors():
  assert cot.trace_writer("countdown") is cot.countdown_trace
  assert cot.trace_writer("addition", "short") is cot.short_arithmetic_trace
  with pytest.raises(ValueError, match="'short' exists for arithmetic and addition"):
    cot.trace_writer("countdown", "short")
  with pytest.raises(ValueError, match="trace style"):
    cot.trace_writer("arithmetic", "tiny")
  with pytest.raises(ValueError, match="unknown reasoning task 'sudoku'"):
    cot.trace_writer("sudoku")


def test_addition_task_is_arithmetic_plus_only():
  items = addition.generate("train", 200, seed=0, difficulty=2)
  assert {it["op"] for it in items} == {"+"} and {it["task"] for it in items} == {"addition"}
  assert all(arithmetic.has_carry(*it["operands"], "+") for it in items)
  assert all(int(it["answer"]) == sum(it["operands"]) for it in items)
  it = items[0]
  assert verify(wrap(it["answer"]), it["answer"], "addition") == 1.0
  assert verify(wrap(int(it["answer"]) + 1), it["answer"], "addition") == 0.0
