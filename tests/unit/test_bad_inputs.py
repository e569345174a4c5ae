"""The bad-input corpus (tests/data/bad/cases.yaml): every case ends in a clear error naming the file before anything
is written, or in rows kept or rejected with a reason, and raw = curated + rejects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import InputDataError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text())


def generate(name: str, folder: Path) -> Path:
    """The two large cases, written at test time rather than committed."""
    path = folder / name
    if name == "ten_mb_document.csv":
        words = ("lorem ipsum dolor sit amet consectetur " * 300_000)[:10 * 1024 * 1024]
        path.write_text(f'text,label\n"{words}",positive\n"a normal short review",negative\n')
    elif name == "long_line.txt":
        line = " ".join(f"word{i}" for i in range(20_000))[:100_000]
        path.write_text(f"{line}\nand one short line\n")
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    source = generate(spec["generated"], tmp_path) if "generated" in spec else BAD / spec["source"]
    config = {"data_root": str(tmp_path / "lake"), "run_date": "2026-11-01",
              "ingest": {"sources": [str(source)],
                         "label_column": None if spec.get("format_txt") else "label"}}
    cfg = build_config(config)
    if "error" in spec:
        with pytest.raises(InputDataError) as failure:
            run_ingest(cfg)
        message = str(failure.value)
        assert re.search(spec["error"], message), message
        assert str(source) in message or (spec.get("names_source") and spec["source"] in message), message
        assert not (tmp_path / "lake" / "raw").exists()  # refused before any output
        return

    ingested, curated = run_ingest(cfg), run_curate(cfg)
    assert ingested["rows"] == spec["raw"]
    assert curated["raw_rows"] == curated["curated_rows"] + curated["rejected_rows"] == spec["raw"]
    lake = Lake.of(cfg)
    kept, rejects = read_partition(lake, "curated", cfg.run_date), read_partition(lake, "rejects", cfg.run_date)
    assert kept.height + rejects.height == spec["raw"]
    if rejects.height:
        assert rejects["reason"].null_count() == 0  # every rejected row says why
    for reason in spec.get("rejected", []):
        assert curated["rejected_by_reason"][reason] >= 1, curated["rejected_by_reason"]
    if "invalid_utf8_rows" in spec:
        assert ingested["invalid_utf8_rows"] == spec["invalid_utf8_rows"]
    if spec.get("no_carriage_returns"):
        assert not any("\r" in t for t in kept["text"].to_list())
    if "labels" in spec:
        assert set(kept["label"].drop_nulls().to_list()) == set(spec["labels"])
    if "train_error" in spec:
        from bert_pipeline.stages.tokenize import run_tokenize
        from bert_pipeline.stages.train import run_train

        run_tokenize(cfg)
        with pytest.raises(InputDataError, match=spec["train_error"]):
            run_train(cfg)


def test_a_night_mostly_rejected_for_its_text_says_which_column_and_settings_to_check(tmp_path: Path) -> None:
    """ingest.text_column pointed at the order number instead of the review: curate keeps going (the rows stay in
    rejects with their reasons) but says so, with the reasons, their settings and rejected texts."""
    import polars as pl

    from bert_pipeline.stages.report import write_report

    orders = ["48213", "#48214", "48215-B", "4821", "48217 / 2", "", "48219", "48220", "x", "48222", "48223",
              "Zahlung 48224 ok"]
    reviews = ["Arrived late but intact", "包装很好，物流很快", "Colis abîmé 😞", "ok", "Great value", "",
               "Not as described", "Works fine", "Meh", "Would buy again", "Refund took weeks", "Danke!"]
    pl.DataFrame({"order": orders, "review": reviews}).write_csv(tmp_path / "orders.csv")
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-04-01",
                        "ingest": {"sources": [str(tmp_path / "orders.csv")], "text_column": "order"}})
    run_ingest(cfg)
    summary = run_curate(cfg)
    [warning] = summary["warnings"]
    assert warning.startswith("11 of 12 raw rows of run_date=2026-04-01 (91.7%) were rejected for their text: "
                              "low_alpha 9 (curate.min_alpha_ratio = 0.25), empty 1, too_short 1 (curate.min_chars = 3)")
    assert "orders.csv row 1: '48213'; " in warning and "orders.csv row 2: '#48214'; " in warning
    assert "orders.csv row 3: '48215-B'. Check" in warning
    assert "Check the sources: that ingest.text_column ('order') is the column that holds the text" in warning
    assert run_curate(cfg)["warnings"] == [warning]  # a skipped rerun says it again
    report = Path(write_report(cfg)["report"]).read_text()
    assert f"**Rejected for their text**: {warning}." in report
    # the right column: nothing to say
    right = build_config(cfg.model_dump() | {"data_root": str(tmp_path / "lake2"),
                                             "ingest": cfg.ingest.model_dump() | {"text_column": "review"}})
    run_ingest(right)
    done = run_curate(right)
    assert done["warnings"] == [] and done["rejected_rows"] == 2  # the empty review and "ok": a night's usual
