"""Offline code tasks: procedural string/array problems with generated tests and reference programs.

Each family has a statement, an input generator, a trusted in-process solver (`solve`, usually the
straightforward or brute-force algorithm) that computes the expected outputs, and a reference
program (`reference`, written independently, usually the efficient algorithm) that the tests run in
the sandbox: the two agreeing on every generated test is what checks the task set. Families are
stdin/stdout programs or call-based functions, so both test forms of the code reward get used.

Difficulty scales the input sizes and value ranges (easy: a handful of small numbers; hard:
hundreds). Generation is deterministic in (seed, index). `to_record` gives the canonical RL record
(`prompt`, `answer` = the code reward's test spec, `task`, `id`), so RL on code needs no downloads.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any, Callable

DIFFICULTIES = ("easy", "medium", "hard")

# (min length, max length, value bound) per difficulty.
_SIZES = {"easy": (1, 8, 10), "medium": (5, 40, 100), "hard": (30, 300, 10_000)}


@dataclasses.dataclass(frozen=True)
class _Family:
  name: str
  statement: str                        # what to compute, with the I/O format or signature
  generate: Callable[[random.Random, int, int], Any]   # (rng, length, value bound) -> input
  solve: Callable[[Any], Any]
  reference: str                        # an independent, complete solution program
  fn_name: str | None = None            # call-based when set: generate() returns the args list
  to_stdin: Callable[[Any], str] = str
  to_stdout: Callable[[Any], str] = str


@dataclasses.dataclass(frozen=True)
class CodeTask:
  task_id: str
  family: str
  difficulty: str
  prompt: str
  tests: dict                           # the code reward's test spec
  reference_solution: str


def _ints(rng: random.Random, n: int, bound: int) -> list[int]:
  return [rng.randint(-bound, bound) for _ in range(n)]


def _word(rng: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz") -> str:
  return "".join(rng.choice(alphabet) for _ in range(n))


def _array_stdin(xs: list[int]) -> str:
  return f"{len(xs)}\n{' '.join(map(str, xs))}\n"


def _max_subarray_brute(xs: list[int]) -> int:
  prefix = [0, *itertools.accumulate(xs)]
  return max(prefix[j] - prefix[i] for i in range(len(xs)) for j in range(i + 1, len(xs) + 1))


def _lis_quadratic(xs: list[int]) -> int:
  best = [1] * len(xs)
  for j in range(len(xs)):
    for i in range(j):
      if xs[i] < xs[j]:
        best[j] = max(best[j], best[i] + 1)
  return max(best)


def _balanced(s: str) -> bool:
  pairs, stack = {")": "(", "]": "[", "}": "{"}, []
  for ch in s:
    if ch in pairs:
      if not stack or stack.pop() != pairs[ch]:
        return False
    else:
      stack.append(ch)
  return not stack


def _bracket_lines(rng: random.Random, n: int, bound: int) -> list[str]:
  """A mix of balanced strings (built by nesting) and near-misses (one edit away)."""
  lines = []
  for _ in range(max(1, n // 2)):
    s = ""
    for _ in range(rng.randint(1, max(1, n // 2))):
      o, c = rng.choice(["()", "[]", "{}"])
      s = rng.choice([o + s + c, s + o + c, o + c + s])
    if rng.random() < 0.5:
      i = rng.randrange(len(s))
      s = s[:i] + rng.choice("()[]{}") + s[i + 1:] if rng.random() < 0.7 else s[:i] + s[i + 1:]
    lines.append(s or "()")
  return lines


def _nums_and_target(rng: random.Random, n: int, bound: int) -> list:
  """The target is a sum of two entries, possibly the same one twice (tests the i < j rule)."""
  nums = _ints(rng, n, max(3, bound // 3))
  return [nums, nums[rng.randrange(n)] + nums[rng.randrange(n)]]


def _merge_sweep(intervals: list[list[int]]) -> list[list[int]]:
  merged: list[list[int]] = []
  for start, end in sorted(intervals):
    if merged and start <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], end)
    else:
      merged.append([start, end])
  return merged


def _intervals(rng: random.Random, n: int, bound: int) -> list[list[list[int]]]:
  bound = min(bound, 1000)  # the reference marks every covered point
  spans = []
  for _ in range(n):
    start = rng.randint(0, bound)
    spans.append([start, start + rng.randint(0, max(1, bound // 10))])
  return [spans]


FAMILIES: dict[str, _Family] = {f.name: f for f in [
    _Family(
        name="sum_of_evens",
        statement=("The first line holds n, the second n integers. Print the sum of the even "
                   "integers (0 if there are none)."),
        generate=_ints, to_stdin=_array_stdin,
        solve=lambda xs: sum(x for x in xs if x % 2 == 0),
        reference=("n = int(input())\nnums = list(map(int, input().split()))\ntotal = 0\n"
                   "for x in nums:\n    if x & 1 == 0:\n        total += x\nprint(total)\n")),
    _Family(
        name="reverse_words",
        statement=("One line holds words of lowercase letters separated by single spaces. Print "
                   "the words in reverse order, separated by single spaces."),
        generate=lambda rng, n, bound: [_word(rng, rng.randint(1, 6)) for _ in range(n)],
        to_stdin=lambda words: " ".join(words) + "\n",
        solve=lambda words: " ".join(reversed(words)),
        reference=("words = input().split()\nout = []\ni = len(words) - 1\nwhile i >= 0:\n"
                   "    out.append(words[i])\n    i -= 1\nprint(' '.join(out))\n")),
    _Family(
        name="run_length",
        statement=("One line holds a string of lowercase letters. Print its run-length encoding: "
                   "for each maximal run of equal letters, the letter then the run's length "
                   "(\"aaabcc\" -> \"a3b1c2\")."),
        generate=lambda rng, n, bound: _word(rng, n * 2, "aab" if bound <= 10 else "aabbc"),
        to_stdin=lambda s: s + "\n",
        solve=lambda s: "".join(f"{ch}{len(list(run))}" for ch, run in itertools.groupby(s)),
        reference=("s = input().strip()\nparts = []\ni = 0\nwhile i < len(s):\n    j = i\n"
                   "    while j < len(s) and s[j] == s[i]:\n        j += 1\n"
                   "    parts.append(s[i] + str(j - i))\n    i = j\nprint(''.join(parts))\n")),
    _Family(
        name="max_subarray",
        statement=("The first line holds n, the second n integers. Print the largest sum of a "
                   "non-empty contiguous subarray."),
        generate=_ints, to_stdin=_array_stdin, solve=_max_subarray_brute,
        reference=("input()\nnums = list(map(int, input().split()))\nbest = cur = nums[0]\n"
                   "for x in nums[1:]:\n    cur = max(x, cur + x)\n    best = max(best, cur)\n"
                   "print(best)\n")),
    _Family(
        name="lis_length",
        statement=("The first line holds n, the second n integers. Print the length of the "
                   "longest strictly increasing subsequence."),
        generate=_ints, to_stdin=_array_stdin, solve=_lis_quadratic,
        reference=("import bisect\ninput()\ntails = []\nfor x in map(int, input().split()):\n"
                   "    i = bisect.bisect_left(tails, x)\n    if i == len(tails):\n"
                   "        tails.append(x)\n    else:\n        tails[i] = x\n"
                   "print(len(tails))\n")),
    _Family(
        name="balanced_brackets",
        statement=("The first line holds q; each of the next q lines holds a string of the "
                   "characters ()[]{}. For each string print YES if its brackets are balanced "
                   "and properly nested, else NO."),
        generate=_bracket_lines,
        to_stdin=lambda lines: f"{len(lines)}\n" + "".join(s + "\n" for s in lines),
        solve=lambda lines: "\n".join("YES" if _balanced(s) else "NO" for s in lines),
        reference=("q = int(input())\nfor _ in range(q):\n    s = input().strip()\n"
                   "    previous = None\n    while previous != s:\n        previous = s\n"
                   "        s = s.replace('()', '').replace('[]', '').replace('{}', '')\n"
                   "    print('NO' if s else 'YES')\n")),
    _Family(
        name="count_pairs",
        statement=("Write a function `count_pairs(nums, target)` returning the number of index "
                   "pairs i < j with nums[i] + nums[j] == target."),
        fn_name="count_pairs",
        generate=_nums_and_target,
        solve=lambda args: sum(args[0][i] + args[0][j] == args[1]
                               for i in range(len(args[0])) for j in range(i + 1, len(args[0]))),
        reference=("from collections import Counter\n\ndef count_pairs(nums, target):\n"
                   "    seen = Counter()\n    pairs = 0\n    for x in nums:\n"
                   "        pairs += seen[target - x]\n        seen[x] += 1\n    return pairs\n")),
    _Family(
        name="rotate_right",
        statement=("Write a function `rotate_right(nums, k)` returning a new list: nums rotated "
                   "right by k places (k >= 0 may exceed len(nums); nums is non-empty)."),
        fn_name="rotate_right",
        generate=lambda rng, n, bound: [_ints(rng, n, bound), rng.randint(0, 3 * n)],
        solve=lambda args: [args[0][(i - args[1]) % len(args[0])] for i in range(len(args[0]))],
        reference=("def rotate_right(nums, k):\n    k %= len(nums)\n"
                   "    return nums[len(nums) - k:] + nums[:len(nums) - k]\n")),
    _Family(
        name="most_frequent_char",
        statement=("Write a function `most_frequent_char(s)` returning the character that occurs "
                   "most often in the non-empty lowercase string s; on ties, the alphabetically "
                   "smallest one."),
        fn_name="most_frequent_char",
        generate=lambda rng, n, bound: [_word(rng, n, "abcde" if bound <= 10 else "abcdefgh")],
        solve=lambda args: max(sorted(set(args[0])), key=args[0].count),
        reference=("from collections import Counter\n\ndef most_frequent_char(s):\n"
                   "    counts = Counter(s)\n"
                   "    return min(counts, key=lambda ch: (-counts[ch], ch))\n")),
    _Family(
        name="merge_intervals",
        statement=("Write a function `merge_intervals(intervals)` that takes a list of [start, "
                   "end] integer pairs (start <= end) and returns the union as a list of "
                   "disjoint [start, end] pairs sorted by start; intervals that touch or overlap "
                   "(e.g. [1, 3] and [3, 5]) merge."),
        fn_name="merge_intervals",
        generate=_intervals, solve=lambda args: _merge_sweep(args[0]),
        reference=("def merge_intervals(intervals):\n"
                   "    # Doubled coordinates: touching intervals share a point, gaps stay gaps.\n"
                   "    covered = set()\n    for start, end in intervals:\n"
                   "        covered.update(range(2 * start, 2 * end + 1))\n"
                   "    result = []\n    previous = None\n    for p in sorted(covered):\n"
                   "        if previous is None or p != previous + 1:\n"
                   "            result.append([p // 2, p // 2])\n"
                   "        result[-1][1] = p // 2\n        previous = p\n"
                   "    return result\n")),
]}


def _prompt(family: _Family, example_in: Any, example_out: Any) -> str:
  if family.fn_name is None:
    how = ("Write a Python 3 program that reads standard input and writes standard output "
           "(standard library only).")
    example = (f"Example input:\n```\n{family.to_stdin(example_in)}```\n"
               f"Example output:\n```\n{family.to_stdout(example_out)}\n```")
  else:
    how = ("Write it in Python 3 (standard library only); it is called directly, so do not read "
           "input or print.")
    args = ", ".join(repr(a) for a in example_in)
    example = f"Example: `{family.fn_name}({args})` returns `{example_out!r}`."
  return (f"{family.statement}\n{how}\n\n{example}\n\n"
          "Give your solution as a single ```python code block.")


def make_task(family_name: str, difficulty: str, index: int, seed: int = 0,
              num_tests: int = 6) -> CodeTask:
  """One task: test 0 is a small example (shown in the prompt), test 1 the shortest input."""
  if family_name not in FAMILIES:
    raise KeyError(f"code task family {family_name!r}; known: {sorted(FAMILIES)}")
  if difficulty not in _SIZES:
    raise ValueError(f"code task difficulty {difficulty!r}; known: {DIFFICULTIES}")
  if num_tests < 2:
    raise ValueError(f"code tasks need num_tests >= 2 (example + edge case), got {num_tests}")
  family = FAMILIES[family_name]
  rng = random.Random(f"code-task:{seed}:{family_name}:{difficulty}:{index}")
  low, high, bound = _SIZES[difficulty]
  lengths = [min(high, 6), low] + [rng.randint(low, high) for _ in range(num_tests - 2)]
  inputs = [family.generate(rng, n, bound) for n in lengths]
  outputs = [family.solve(x) for x in inputs]
  if family.fn_name is None:
    tests = {"tests": [{"stdin": family.to_stdin(x), "stdout": family.to_stdout(y) + "\n"}
                       for x, y in zip(inputs, outputs)]}
  else:
    tests = {"fn_name": family.fn_name,
             "tests": [{"args": x, "expected": y} for x, y in zip(inputs, outputs)]}
  return CodeTask(task_id=f"code/{family_name}/{difficulty}/{seed}-{index}", family=family_name,
                  difficulty=difficulty, prompt=_prompt(family, inputs[0], outputs[0]),
                  tests=tests, reference_solution=family.reference)


def make_code_tasks(num_tasks: int, seed: int = 0, difficulties: tuple[str, ...] = DIFFICULTIES,
                    families: tuple[str, ...] | None = None, num_tests: int = 6) -> list[CodeTask]:
  """`num_tasks` tasks cycling through families, then difficulties; deterministic in `seed`."""
  names = tuple(families) if families is not None else tuple(FAMILIES)
  if not names or not difficulties:
    raise ValueError("make_code_tasks: families and difficulties must be non-empty")
  return [make_task(names[i % len(names)], difficulties[(i // len(names)) % len(difficulties)],
                    i, seed, num_tests) for i in range(num_tasks)]


def to_record(task: CodeTask) -> dict:
  """Canonical RL record: the code reward reads `answer` (the test spec)."""
  return {"id": task.task_id, "prompt": task.prompt, "answer": task.tests, "task": "code"}

