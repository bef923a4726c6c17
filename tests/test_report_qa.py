"""SQuAD v2 answerable / unanswerable breakdown (report.qa): exact figures from hand-built metrics, the
always-no-answer baseline, the sentence for a model that answers and one that never does, missing keys, and
the breakdown in report.html, summary.md, tables/squad_v2_breakdown.csv and verdicts.json."""

from __future__ import annotations

import html
import json
import math

import pandas as pd
import pytest

from fake_results import squad_metrics, write_fake_run
from tunebench.report.build import build_report
from tunebench.report.qa import (
    OverSeeds,
    has_ans_answered,
    over_seeds_text,
    qa_breakdown,
    score,
)
from tunebench.report.render import qa_display, render_markdown, write_report

H, N = 60, 40           # answerable / unanswerable test questions: always no answer scores F1 40.0
LORA_HAS = [4.0, 5.0, 6.0]
LORA_NO = [90.0, 92.0, 94.0]
THRESHOLDS = [1.0, 2.0, 3.0]
QA_FIELDS = {"has_ans_f1", "no_ans_f1", "has_ans_answered", "null_threshold", "answers", "has_ans_total",
             "no_ans_total", "total", "no_answer_baseline", "qa_sentence"}


def run(seed: int, has: float, no: float, threshold: float | None = None, answered: float | None = None,
        h: int = H, n: int = N) -> dict:
    return {"seed": seed, "test": squad_metrics(has, no, h, n), "null_threshold": threshold,
            "has_ans_answered": answered}


def lora_runs(answered: float | None = None) -> list[dict]:
    return [run(s, a, b, t, answered) for s, a, b, t in zip((1, 2, 3), LORA_HAS, LORA_NO, THRESHOLDS, strict=True)]


def silent_runs(answered: float | None = 0.0) -> list[dict]:
    """Full fine-tuning that says "no answer" to everything: exactly the baseline."""
    return [run(s, 0.0, 100.0, 7.0, answered) for s in (1, 2, 3)]


# ---------------------------------------------------------------- figures


def test_means_ranges_counts_and_the_baseline_exactly():
    qa = qa_breakdown({"full": silent_runs(), "lora": lora_runs(answered=50.0)})
    assert [m.method for m in qa.methods] == ["lora", "full"]                   # LoRA first
    lora, full = qa.methods
    assert lora.seeds == (1, 2, 3) and lora.seeds_answering == 3
    assert lora.has_ans_f1 == OverSeeds(3, 5.0, 1.0, 4.0, 6.0)
    assert lora.no_ans_f1 == OverSeeds(3, 92.0, 2.0, 90.0, 94.0)
    f1 = [(a * H + b * N) / (H + N) for a, b in zip(LORA_HAS, LORA_NO, strict=True)]   # 38.4, 39.8, 41.2
    assert lora.f1.mean == pytest.approx(39.8, abs=1e-12) and (lora.f1.low, lora.f1.high) == (min(f1), max(f1))
    assert lora.null_threshold.mean == 2.0 and lora.null_threshold.sd == 1.0
    assert lora.has_ans_answered.mean == 50.0
    assert (qa.has_ans_total, qa.no_ans_total, qa.total, qa.counts_differ) == (60, 40, 100, False)
    assert (qa.baseline_f1, qa.baseline_has_ans_f1, qa.baseline_no_ans_f1) == (40.0, 0.0, 100.0)
    assert full.f1.mean == 40.0 and full.f1_minus_baseline == 0.0 and full.has_ans_f1.sd == 0.0
    assert lora.answers is True and full.answers is False
    fields = qa.verdict_fields()
    assert set(fields) == QA_FIELDS
    assert fields["has_ans_f1"] == {"lora": 5.0, "full": 0.0} and fields["no_ans_f1"] == {"lora": 92.0, "full": 100.0}
    assert fields["null_threshold"] == {"lora": 2.0, "full": 7.0}
    assert (fields["has_ans_total"], fields["no_ans_total"]) == (60, 40)
    assert fields["no_answer_baseline"] == {"name": "always no answer", "f1": 40.0, "has_ans_f1": 0.0,
                                            "no_ans_f1": 100.0}


def test_the_official_dev_set_baseline():
    # SQuAD v2 dev: 5,928 answerable, 5,945 unanswerable -> answering nothing scores F1 50.07
    qa = qa_breakdown({"full": [run(1, 0.0, 100.0, h=5928, n=5945)]})
    assert qa.baseline_f1 == pytest.approx(100 * 5945 / 11873) and score(qa.baseline_f1) == "50.1"
    assert qa.methods[0].sentence.endswith("overall F1 50.1 is the same as always no answer's.")


def test_the_sentence_for_a_model_that_answers_and_one_that_never_does():
    qa = qa_breakdown({"lora": lora_runs(), "full": silent_runs()})
    assert qa.by_method()["lora"].sentence == (
        "LoRA answers: HasAns F1 5.0 (0.0 for always no answer), NoAns F1 92.0 (100.0 for always no answer); "
        "overall F1 39.8 is 0.2 points below always no answer's 40.0.")
    assert qa.by_method()["full"].sentence == (
        "full predicts no answer for every answerable question (HasAns F1 0.0, as always no answer), NoAns F1 "
        "100.0 (100.0 for always no answer); overall F1 40.0 is the same as always no answer's.")
    assert qa.sentence == qa.methods[0].sentence + " " + qa.methods[1].sentence


def test_the_sentence_says_only_what_the_numbers_show():
    # HasAns F1 0 but answers given (wrong spans): not "predicts no answer"
    full = qa_breakdown({"full": silent_runs(answered=12.5)}).methods[0]
    assert full.sentence.startswith("full answers 12.5% of the answerable questions but gets none even partly "
                                    "right (HasAns F1 0.0, as always no answer)")
    # no predictions: the answered share is unknown, so nothing is said about it
    full = qa_breakdown({"full": silent_runs(answered=None)}).methods[0]
    assert full.sentence.startswith("full gets no answerable question even partly right (HasAns F1 0.0")
    # answers on some seeds only
    mixed = [run(1, 0.0, 100.0), run(2, 3.0, 95.0), run(3, 0.0, 99.0)]
    lora = qa_breakdown({"lora": mixed}).methods[0]
    assert lora.answers is True and lora.seeds_answering == 1
    assert lora.sentence.startswith("LoRA answers on 1 of 3 seeds: HasAns F1 1.0 on average (0.0 for always no "
                                    "answer)")
    # a tiny HasAns F1 is not rounded to the baseline's 0.0; an overall F1 above the baseline says so
    tiny = qa_breakdown({"lora": [run(1, 0.03, 100.0)]}).methods[0]
    assert "HasAns F1 0.03 (0.0 for always no answer)" in tiny.sentence
    assert tiny.sentence.endswith("overall F1 40.0 is 0.018 points above always no answer's 40.0.")


def test_missing_keys_read_as_n_a_not_a_crash():
    # every question answerable: the official script leaves NoAns_* out
    only_has = qa_breakdown({"lora": [run(1, 30.0, 0.0, h=50, n=0)]})
    m = only_has.methods[0]
    assert (only_has.has_ans_total, only_has.no_ans_total, only_has.total) == (50, 0, 50)
    assert only_has.baseline_f1 == 0.0 and math.isnan(only_has.baseline_no_ans_f1)
    assert m.no_ans_f1.n == 0 and math.isnan(m.no_ans_f1.mean)
    assert m.sentence == ("LoRA answers: HasAns F1 30.0 (0.0 for always no answer), NoAns F1 n/a (no unanswerable "
                          "question); overall F1 30.0 is 30.0 points above always no answer's 0.0.")
    # every question unanswerable: HasAns_* left out
    only_no = qa_breakdown({"full": [run(1, 0.0, 80.0, h=0, n=20)]})
    assert only_no.baseline_f1 == 100.0 and math.isnan(only_no.baseline_has_ans_f1)
    assert only_no.methods[0].answers is None
    assert only_no.methods[0].sentence.startswith("full: the test set has no answerable question (HasAns F1 n/a), "
                                                  "NoAns F1 80.0")
    # an old metrics.json with the overall F1 only, no threshold, no seed
    bare = qa_breakdown({"lora": [{"test": {"f1": 61.0}}], "full": [{"test": {}}]})
    assert bare.has_ans_total is None and math.isnan(bare.baseline_f1)
    lora, full = bare.methods
    assert lora.sentence == ("LoRA: whether it answers is not known (HasAns F1 n/a: not in metrics.json); overall "
                             "F1 61.0 (always no answer n/a: the question counts are not in metrics.json).")
    assert full.sentence.endswith("overall F1 n/a (always no answer: n/a).")
    display = qa_display(bare)
    assert list(display.iloc[0]) == ["LoRA", "1", "61.0", "n/a", "n/a", "n/a"]
    assert list(display.iloc[2]) == ["always no answer (trivial baseline)", "–", "n/a", "0.0", "100.0", "–"]
    table = bare.table()
    assert table["has_ans_total"].isna().all() and len(table) == 3
    json.dumps(bare.verdict_fields(), allow_nan=True)
    assert qa_breakdown({}) is None and qa_breakdown({"lora": []}) is None


def test_test_sets_that_differ_are_noted():
    qa = qa_breakdown({"lora": [run(1, 5.0, 90.0, h=60, n=40)], "full": [run(1, 0.0, 100.0, h=50, n=50)]})
    assert qa.counts_differ and qa.has_ans_total is None and qa.baseline_f1 == 45.0
    assert qa.by_method()["full"].baseline_f1 == 50.0 and qa.by_method()["lora"].baseline_f1 == 40.0
    assert "differ" in qa.notes[0]


def test_answered_share_and_display_helpers():
    frame = pd.DataFrame({"id": list("abcde"), "has_answer": [True, True, True, True, False],
                          "prediction": ["x", "", "y", "", "z"]})
    assert has_ans_answered(frame) == 50.0
    assert has_ans_answered(None) is None and has_ans_answered(frame[["id"]]) is None
    assert has_ans_answered(frame[~frame["has_answer"]]) is None
    assert over_seeds_text(OverSeeds(3, 5.0, 1.0, 4.0, 6.0)) == "5.0 (4.0–6.0)"
    assert over_seeds_text(OverSeeds(1, 5.0, math.nan, 5.0, 5.0)) == "5.0"
    assert over_seeds_text(OverSeeds(0, math.nan, math.nan, math.nan, math.nan)) == "n/a"
    assert score(0.0) == "0.0" and score(0.04) == "0.04" and score(None) == "n/a" and score(5.5031, 2) == "5.50"


# ---------------------------------------------------------------- in the report


def predictions(answered: int) -> list[dict]:
    """100 questions, the first 60 answerable; the first `answered` of those get an answer."""
    return [{"id": f"q{i:03d}", "has_answer": i < H, "prediction": "x" if i < answered else "",
             "null_score_diff": 0.0, "exact": float(i >= H), "f1": float(i >= H)} for i in range(H + N)]


def write_squad_study(root) -> None:
    for seed, has, no, t in zip((1, 2, 3), LORA_HAS, LORA_NO, THRESHOLDS, strict=True):
        write_fake_run(root, "squad_v2", "lora", seed, test=squad_metrics(has, no, H, N), validation=50.0,
                       extra={"qa": {"null_threshold": t}}, predictions=predictions(30))
        write_fake_run(root, "squad_v2", "full", seed, test=squad_metrics(0.0, 100.0, H, N), validation=50.0,
                       extra={"qa": {"null_threshold": 7.0}}, predictions=predictions(0))
    write_fake_run(root, "rte", "lora", 1, test=0.6, validation=0.6)
    write_fake_run(root, "rte", "full", 1, test=0.62, validation=0.6)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_squad_study(root)
    report = build_report(root, n_resamples=200, with_figures=False)
    return report, write_report(report, root / "report")


def test_report_reads_thresholds_and_answered_shares_from_the_run_folders(written):
    report, _ = written
    lora, full = report.qa.methods
    assert lora.null_threshold.mean == 2.0 and full.null_threshold.mean == 7.0
    assert lora.has_ans_answered == OverSeeds(3, 50.0, 0.0, 50.0, 50.0) and full.has_ans_answered.high == 0.0
    assert full.sentence.startswith("full predicts no answer for every answerable question")


def test_html_holds_the_breakdown_after_the_verdict_and_before_efficiency(written):
    report, files = written
    page = files["report.html"].read_text(encoding="utf-8")
    at = page.index("SQuAD v2: answerable and unanswerable questions")
    assert page.index('class="tbl verdict"') < at < page.index("<h2>Efficiency")
    section = page[at:page.index("<h2>Efficiency")]
    for text in ("60 answerable (HasAns_total), 40 unanswerable (NoAns_total), 100 in all", "HasAns F1",
                 "NoAns F1", "null threshold", "5.0 (4.0–6.0)", "92.0 (90.0–94.0)", "39.8 (38.4–41.2)", "2.00",
                 "always no answer (trivial baseline)", "40.0", html.escape(report.qa.methods[0].sentence),
                 html.escape(report.qa.methods[1].sentence)):
        assert text in section, text
    assert section.count("<tr") == 4   # header, LoRA, full, baseline


def test_summary_holds_a_short_table_and_the_sentences(written):
    report, files = written
    summary = files["summary.md"].read_text(encoding="utf-8")
    assert summary.index("## Verdicts") < summary.index("## SQuAD v2: answerable") < summary.index("## Efficiency")
    assert ("| method | seeds | F1 | HasAns F1 | NoAns F1 | answerable answered (%) | null threshold |" in summary)
    assert "| LoRA | 3 | 39.8 (38.4–41.2) | 5.0 (4.0–6.0) | 92.0 (90.0–94.0) | 50.0 | 2.00 |" in summary
    assert "| full | 3 | 40.0 | 0.0 | 100.0 | 0.0 | 7.00 |" in summary
    assert "| always no answer (trivial baseline) | – | 40.0 | 0.0 | 100.0 | 0.0 | – |" in summary
    assert f"- {report.qa.sentence.split(' full ')[0]}" in summary


def test_csv_holds_one_row_per_method_and_the_baseline(written):
    _, files = written
    table = pd.read_csv(files["squad_v2_breakdown.csv"]).set_index("row")
    assert list(table.index) == ["lora", "full", "always no answer"]
    assert table.loc["lora", "has_ans_f1_mean"] == 5.0 and table.loc["lora", "has_ans_f1_sd"] == 1.0
    assert (table.loc["lora", "has_ans_f1_min"], table.loc["lora", "has_ans_f1_max"]) == (4.0, 6.0)
    assert table.loc["lora", "null_threshold_mean"] == 2.0 and table.loc["lora", "seeds"] == "1,2,3"
    assert table.loc["full", "no_ans_f1_mean"] == 100.0 and not table.loc["full", "answers"]
    assert table.loc["always no answer", "f1_mean"] == 40.0 and table.loc["always no answer", "has_ans_f1_mean"] == 0
    assert (table["has_ans_total"] == 60).all() and (table["no_ans_total"] == 40).all()


def test_verdicts_json_squad_row_gains_the_figures_and_other_rows_do_not(written):
    report, files = written
    data = json.loads(files["verdicts.json"].read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"{c} in verdicts.json"))
    squad, rte = data["squad_v2"], data["rte"]
    assert QA_FIELDS <= set(squad) and not QA_FIELDS & set(rte)
    assert squad["has_ans_f1"] == {"lora": 5.0, "full": 0.0}
    assert squad["no_ans_f1"] == {"lora": 92.0, "full": 100.0}
    assert squad["null_threshold"] == {"lora": 2.0, "full": 7.0}
    assert (squad["has_ans_total"], squad["no_ans_total"], squad["total"]) == (60, 40, 100)
    assert squad["answers"] == {"lora": True, "full": False}
    assert squad["no_answer_baseline"]["f1"] == 40.0 and squad["qa_sentence"] == report.qa.sentence
    assert squad["baseline"]["value"] == 40.0   # the verdict's own baseline (from predictions) agrees
    assert squad["word"] == "not learned"       # neither arm beats always no answer by more than the margin


def test_no_squad_runs_no_breakdown(tmp_path):
    write_fake_run(tmp_path, "rte", "lora", 1, test=0.6, validation=0.6)
    report = build_report(tmp_path, with_figures=False)
    assert report.qa is None
    files = write_report(report, tmp_path / "report")
    assert "squad_v2_breakdown.csv" not in files and not (tmp_path / "report" / "tables" /
                                                          "squad_v2_breakdown.csv").exists()
    assert "SQuAD v2: answerable" not in files["report.html"].read_text(encoding="utf-8")
    assert "SQuAD v2: answerable" not in render_markdown(report)
    assert not QA_FIELDS & set(report.verdict_rows[0])
