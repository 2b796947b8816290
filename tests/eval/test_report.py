"""Tests for r1jax.eval.report (EvalResult, JSON, Markdown table) and r1jax.eval.plots (JSONL
reading, PNG training curves)."""
import json
import logging

import numpy as np
import pytest

from r1jax.eval import plots, report
from r1jax.eval.report import EvalResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(benchmark="AIME", label="R1-Zero", **overrides):
  fields = dict(benchmark=benchmark, label=label, pass_at_1=0.7123, num_problems=30, k=16,
                cons_at_k=0.8667, pass_at_k={1: 0.7123, 8: 0.9012}, mean_length=11873.4)
  fields.update(overrides)
  return EvalResult(**fields)


def _split_row(line: str) -> list[str]:
  assert line.startswith("| ") and line.endswith(" |"), line
  return [cell.strip() for cell in line[2:-2].split(" | ")]


# ----------------------------------------------------------------------------------------------
# EvalResult and JSON


def test_eval_result_dict_round_trip_through_json_text():
  result = _result(extra={"seed": 3}, max_new_tokens=32768)
  data = json.loads(json.dumps(result.to_dict()))
  assert data["pass_at_k"] == {"1": 0.7123, "8": 0.9012}  # JSON object keys are strings
  back = EvalResult.from_dict(data)
  assert back == result
  assert back.pass_at_k == {1: 0.7123, 8: 0.9012}


def test_eval_result_validation_names_the_field():
  with pytest.raises(ValueError, match=r"'AIME', 'R1'.*pass_at_1 must be a fraction"):
    _result(label="R1", pass_at_1=71.2)  # a percentage, not a fraction
  with pytest.raises(ValueError, match=r"pass_at_k has k=32 > the k=16"):
    _result(pass_at_k={32: 0.9})
  with pytest.raises(ValueError, match="pass_at_k keys must be positive ints"):
    _result(pass_at_k={"many": 0.9})
  with pytest.raises(ValueError, match="label must be a non-empty string"):
    _result(label="")
  with pytest.raises(ValueError, match="k must be an int"):
    _result(k=2.5)
  with pytest.raises(ValueError, match=r"where: missing field\(s\) \['k'\]"):
    EvalResult.from_dict({"benchmark": "a", "label": "b", "pass_at_1": 0.5,
                          "num_problems": 3}, where="where")
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['pass1'\]"):
    EvalResult.from_dict({**_result().to_dict(), "pass1": 0.5})


def test_write_and_load_json(tmp_path):
  results = [_result(), _result("MATH-500", "R1", cons_at_k=None, pass_at_k={})]
  path = report.write_json(results, tmp_path / "sub" / "results.json")
  assert report.load_json(path) == results
  payload = json.loads((tmp_path / "sub" / "results.json").read_text())
  assert payload["format"] == report.FORMAT and len(payload["results"]) == 2
  assert [p.name for p in (tmp_path / "sub").iterdir()] == ["results.json"]  # no temp file left
  # A bare list of result objects also loads.
  bare = tmp_path / "bare.json"
  bare.write_text(json.dumps([r.to_dict() for r in results]))
  assert report.load_json(bare) == results


def test_load_json_errors_name_file_and_entry(tmp_path):
  bad = tmp_path / "bad.json"
  rows = [_result().to_dict(), _result().to_dict()]
  del rows[1]["k"]
  bad.write_text(json.dumps({"format": report.FORMAT, "results": rows}))
  with pytest.raises(ValueError, match=r"bad\.json: results\[1\]: missing field\(s\) \['k'\]"):
    report.load_json(bad)
  broken = tmp_path / "broken.json"
  broken.write_text('{"results": [\n  {"benchmark": }\n]}')
  with pytest.raises(ValueError, match=r"broken\.json:2: not valid JSON"):
    report.load_json(broken)
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"format": "something/v9", "results": []}))
  with pytest.raises(ValueError, match="something/v9"):
    report.load_json(other)


def test_result_from_samples_matches_direct_formulas():
  rng = np.random.default_rng(0)
  correct = rng.random((6, 4)) < 0.5  # [P, k]
  answers = [["1" if c else "2" for c in row] for row in correct]
  lengths = rng.integers(10, 100, size=(6, 4))
  result = report.result_from_samples("toy", "step-100", correct, answers=answers,
                                      gold=["1"] * 6, lengths=lengths, ks=[1, 2, 4],
                                      temperature=0.6)
  assert result.pass_at_1 == pytest.approx(correct.mean())
  assert result.pass_at_k[4] == pytest.approx(np.mean(correct.any(axis=1)))
  # Majority of "1" (correct) vs "2"; ties go to whichever appears first.
  expected_cons = []
  for row in correct:
    ones, twos = row.sum(), (~row).sum()
    expected_cons.append(ones > twos or (ones == twos and row[0]))
  assert result.cons_at_k == pytest.approx(np.mean(expected_cons))
  assert result.cons_at_k_stderr == pytest.approx(np.std(expected_cons, ddof=1) / np.sqrt(6))
  assert result.mean_length == pytest.approx(lengths.mean())
  assert (result.num_problems, result.k) == (6, 4)
  with pytest.raises(ValueError, match="both answers and gold"):
    report.result_from_samples("toy", "x", correct, answers=answers)


# ----------------------------------------------------------------------------------------------
# Markdown table


def test_markdown_table_structure_and_formatting():
  results = [
      _result("AIME", "R1-Zero", pass_at_1=0.7123, cons_at_k=0.8667),
      _result("AIME", "R1", pass_at_1=0.798, cons_at_k=None, pass_at_k={}),
      _result("MATH-500", "R1", pass_at_1=0.9734, cons_at_k=0.981, k=4, pass_at_k={4: 0.99}),
  ]
  table = report.markdown_table(results, labels=["R1", "R1-Zero"])
  lines = table.strip().split("\n")
  header = _split_row(lines[0])
  assert header[1:] == ["R1", "R1-Zero"]  # columns in the given order
  assert set(lines[1].replace("|", "").split()) == {"---", "---:"}
  rows = {cells[0]: cells[1:] for cells in map(_split_row, lines[2:])}
  assert all(len(cells) == 2 for cells in rows.values())
  assert list(rows) == ["AIME (pass@1)", "AIME (cons@16)", "AIME (pass@8)",
                        "MATH-500 (pass@1)", "MATH-500 (cons@4)", "MATH-500 (pass@4)"]
  assert rows["AIME (pass@1)"] == ["79.8", "71.2"]
  assert rows["AIME (cons@16)"] == ["–", "86.7"]  # R1 has no cons@k
  assert rows["AIME (pass@8)"] == ["–", "90.1"]
  assert rows["MATH-500 (pass@1)"] == ["97.3", "–"]  # R1-Zero not run on MATH-500
  assert rows["MATH-500 (cons@4)"] == ["98.1", "–"]
  for cells in rows.values():
    for cell in cells:
      assert cell == "–" or (float(cell) >= 0 and len(cell.split(".")[1]) == 1)


def test_markdown_table_selected_metrics_names_and_errors_of_cons():
  """The paper's Table 3: chosen rows per benchmark, display names, pass@1 and cons@k ± SE."""
  results = [_result("aime2024", "r1", pass_at_1=0.25, pass_at_1_stderr=0.125, cons_at_k=0.5,
                     cons_at_k_stderr=0.1, k=64, pass_at_k={64: 0.9}),
             _result("aime2024", "base", pass_at_1=0.1, pass_at_1_stderr=0.05, cons_at_k=0.2, k=64, pass_at_k={}),
             _result("livecodebench", "r1", pass_at_1=0.4, pass_at_1_stderr=0.02, cons_at_k=None, k=8,
                     pass_at_k={8: 0.6}, format_rate=1.0)]
  table = report.markdown_table(results, labels=["base", "r1"], metrics={
      "aime2024": ["pass@1", "cons@k"], "livecodebench": ["pass@1", "cons@k"]},
      names={"aime2024": "AIME 2024", "livecodebench": "LiveCodeBench"})
  rows = [_split_row(line) for line in table.strip().split("\n")[2:]]
  assert rows == [["AIME 2024 (pass@1)", "10.0 ± 5.0", "25.0 ± 12.5"],
                  ["AIME 2024 (cons@64)", "20.0", "50.0 ± 10.0"],
                  ["LiveCodeBench (pass@1)", "–", "40.0 ± 2.0"]]  # no cons@k measured: no row
  # Benchmarks that `metrics` does not name keep every row.
  full = report.markdown_table(results, metrics={"aime2024": ["pass@64"]})
  assert [_split_row(line)[0] for line in full.strip().split("\n")[2:]] == [
      "aime2024 (pass@64)", "livecodebench (pass@1)", "livecodebench (pass@8)", "livecodebench (format)"]
  with pytest.raises(ValueError, match=r"metrics\['aime2024'\] names unknown metrics \['cons@64'\]"):
    report.markdown_table(results, metrics={"aime2024": ["cons@64"]})
  with pytest.raises(ValueError, match="cons_at_k_stderr must be a fraction"):
    _result(cons_at_k_stderr=1.5)
  assert EvalResult.from_dict(results[0].to_dict()) == results[0]


def test_markdown_table_default_order_options_and_errors():
  results = [_result("B", "late"), _result("B", "early"), _result("A", "early")]
  table = report.markdown_table(results, include_pass_at_k=False, include_length=True)
  lines = table.strip().split("\n")
  assert _split_row(lines[0])[1:] == ["late", "early"]  # first-appearance order
  names = [_split_row(line)[0] for line in lines[2:]]
  assert names == ["B (pass@1)", "B (cons@16)", "B (mean length)",
                   "A (pass@1)", "A (cons@16)", "A (mean length)"]
  assert _split_row(lines[4]) == ["B (mean length)", "11873", "11873"]
  assert _split_row(lines[7]) == ["A (mean length)", "–", "11873"]
  # Pipes in labels are escaped so they cannot add columns.
  piped = report.markdown_table([_result(label="a|b")]).split("\n")[0]
  assert "a\\|b" in piped
  with pytest.raises(ValueError, match=r"two results for benchmark 'B', label 'late'"):
    report.markdown_table(results + [_result("B", "late")])
  with pytest.raises(ValueError, match=r"labels \['mid'\] have no results"):
    report.markdown_table(results, labels=["early", "mid"])
  with pytest.raises(ValueError, match="no results"):
    report.markdown_table([])


def test_write_markdown(tmp_path):
  path = report.write_markdown([_result()], tmp_path / "t" / "table.md")
  assert open(path).read() == report.markdown_table([_result()])


# ----------------------------------------------------------------------------------------------
# JSONL and plots


def _training_records(num_steps=12):
  rows = []
  for step in range(0, num_steps * 10, 10):
    rows.append({"step": step, "train/loss": 1.0 / (step + 1), "rollout/response_length/mean": 100.0 + step,
                 "rollout/reflection/wait": step / 10, "rollout/reflection/hmm": 0.5})
    if step % 20 == 0:  # evaluation rows come every other step, as separate rows
      rows.append({"step": step, "eval/aime/pass@1": 0.1 + step / 500,
                   "eval/math/pass@1": 0.3 + step / 400})
  return rows


def _assert_png(path):
  data = open(path, "rb").read()
  assert data[:8] == PNG_MAGIC and len(data) > 1000, path


def test_plot_training_curves_writes_three_pngs(tmp_path):
  paths = plots.plot_training_curves(_training_records(), tmp_path / "plots", title_prefix="zero")
  assert [p.rsplit("/", 1)[1] for p in paths] == [
      "heldout_accuracy.png", "response_length.png", "reflection_words.png"]
  for path in paths:
    _assert_png(path)


def test_plot_training_curves_skips_missing_keys(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="r1jax.eval.plots")
  assert plots.plot_training_curves([{"step": 1, "loss": 0.3}, {"loss": 0.2}], tmp_path) == []
  assert list(tmp_path.iterdir()) == []
  assert "skipped heldout_accuracy.png" in caplog.text
  assert "skipped reflection_words.png" in caplog.text
  assert "1 of 2 rows have no numeric 'step'" in caplog.text
  # Only lengths logged (with a non-numeric and a NaN value mixed in): one figure.
  rows = [{"step": 0, "response_length/mean": 10.0}, {"step": 1, "response_length/mean": "x"},
          {"step": 2, "response_length/mean": float("nan")}, {"step": 3, "response_length/mean": 12}]
  paths = plots.plot_training_curves(rows, tmp_path)
  assert [p.rsplit("/", 1)[1] for p in paths] == ["response_length.png"]
  _assert_png(paths[0])
  assert plots.plot_training_curves([], tmp_path / "empty") == []


def test_series_sorts_steps_and_keeps_last_duplicate():
  rows = [{"step": 5, "m": 1.0}, {"step": 1, "m": 2.0}, {"step": 5, "m": 3.0},
          {"step": 3}, {"step": "7", "m": 4.0}, {"step": 2, "m": True}]
  steps, values = plots.series(rows, "m")
  assert steps.tolist() == [1.0, 5.0] and values.tolist() == [2.0, 3.0]
  assert plots.matching_keys(rows + [{"step": 0, "eval/x/pass@1": 0.1}], ["eval/*pass@1"]) == [
      "eval/x/pass@1"]


def test_read_jsonl_skips_and_counts_malformed_lines(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 0, "a": 1}\n\n[1, 2]\n{"step": 1, "a": 2}\n{"step": 2, "a"\n')
  with caplog.at_level(logging.WARNING, logger="r1jax.eval.plots"):
    rows = plots.read_jsonl(path)
  assert rows == [{"step": 0, "a": 1}, {"step": 1, "a": 2}]
  assert f"{path}:3:" in caplog.text and f"{path}:5:" in caplog.text
  assert "skipped 2 malformed line(s) (lines 3, 5)" in caplog.text
  with pytest.raises(ValueError, match=r"metrics\.jsonl:3: expected a JSON object"):
    plots.read_jsonl(path, strict=True)


def test_plot_jsonl_end_to_end(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in _training_records(4)) + '{"step": 9')
  paths = plots.plot_jsonl(path, tmp_path / "out")
  assert len(paths) == 3
  for p in paths:
    _assert_png(p)


def test_table_shows_pass_at_1_with_its_standard_error():
  from r1jax.eval.report import markdown_table, result_from_samples

  r = result_from_samples("addition", "rl", np.array([[1, 0], [1, 1], [0, 0]], bool))
  assert r.pass_at_1_stderr == pytest.approx(np.std([0.5, 1.0, 0.0], ddof=1) / np.sqrt(3))
  row = markdown_table([r]).splitlines()[2]
  assert row == f"| addition (pass@1) | 50.0 ± {100 * r.pass_at_1_stderr:.1f} |"
  assert EvalResult.from_dict(r.to_dict()).pass_at_1_stderr == r.pass_at_1_stderr
