"""The nightly report: `reports/run_date=YYYY-MM-DD/report.md` plus PNG plots, for people who never open the code.

Plots: rows by curation outcome (reject reasons), the model's test confusion matrix (a multi-label model: its test
F1 per label, and each label's frequency in the test rows against tonight's predictions), the distribution of
tonight's scores, and the change in predicted-label shares against the previous night with predictions: the newest
night BEFORE this run_date (not the newest committed: a backfilled night compares with the night before it) whose
predictions have rows; empty nights in between are skipped and named (a multi-label row counts for each label it was
given). Every number comes from committed manifests and prediction shards, so the report can be rebuilt for any
run_date.
"""

from __future__ import annotations

import io
import unicodedata
from typing import Any, Callable

import numpy as np
import polars as pl

from bert_pipeline.text import coverage as cov
from bert_pipeline.evaluation import baseline, promotion
from bert_pipeline.lake import storage
from bert_pipeline.task import task_of
from bert_pipeline.config import PipelineConfig
from bert_pipeline.lake.manifests import Lake, utc_now
from bert_pipeline.evaluation.registry import committed_models, figure_cell, interval_line, read_champion
from bert_pipeline.stages.curate import standing_notes
from bert_pipeline.stages.ingest import mixed_readings
from bert_pipeline.stages.tokenize import truncation_warning


def write_report(cfg: PipelineConfig) -> dict[str, Any]:
    """Write report.md and its plots for cfg.run_date; returns the folder and what went into it."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    lake = Lake.of(cfg)
    task = task_of(cfg)
    view = REPORTS[cfg.task]()
    folder = storage.join(lake.root, "reports", f"run_date={cfg.run_date}")
    curated = lake.read_manifest("curated", cfg.run_date)
    scores = view.scores(lake, cfg.run_date)
    previous, skipped = previous_night(lake, task.output_area, cfg.run_date)
    metrics = model_metrics(lake, scores["model_version"] if scores else None)
    trained = tonight_model(lake, cfg.run_date)
    sections = [f"# bert-pipeline report, run_date {cfg.run_date}\n\nWritten {utc_now()} from the committed "
                f"manifests under `{lake.root}`.\n"]
    plots: dict[str, bytes] = {}
    if curated:
        raw = lake.read_manifest("raw", cfg.run_date) or {}
        notes = (standing_notes(lake, curated) + [("Labels", w) for w in raw.get("label_warnings") or []]
                 + [("Read under several settings", w) for w in mixed_readings(raw)])
        sections.append(curation_section(curated["counts"], notes))
        if any((curated["counts"].get("rejected_by_reason") or {}).values()):  # one bar of curated rows says nothing
            plots["reject_reasons.png"] = plot_reject_reasons(curated["counts"])
    tokens = lake.read_manifest("tokens", cfg.run_date)
    if tokens:
        version = scores["model_version"] if scores else None
        scored_whole = bool(version) and baseline.model_version_of(version) != version
        sections.append(coverage_section(tokens, cfg.tokenize.max_unknown_share)
                        + length_line(tokens, cfg, scored_whole))
    if trained:
        sections.append(view.training_section(trained) + replaced_line(lake, trained))
    if metrics:
        sections.append(view.model_section(metrics))
        plots |= view.model_plots(metrics, scores)
    if scores:
        before = view.scores(lake, previous) if previous else None
        sections.append(view.score_section(scores, before, previous, skipped)
                        + same_model_line(lake, task.output_area, cfg.run_date, cfg.score.rescore_nights))
        plots |= view.score_plots(scores, before, previous)
    elif lake.read_manifest(task.output_area, cfg.run_date) is not None:
        sections.append(f"## Scores\n\nNo rows scored for run_date {cfg.run_date}: an empty night, with nothing "
                        "to compare (a later night compares with the newest night before it that has rows).\n")
    elif curated and curated["counts"].get("curated_rows"):
        sections.append(f"## Scores\n\nNot scored for run_date {cfg.run_date}: {unscored_reason(cfg, lake)}.\n")
    sections += [f"![{name}]({name})\n" for name in plots]
    for name, png in plots.items():
        storage.write_bytes_atomic(storage.join(folder, name), png)
    report_url = storage.join(folder, "report.md")
    storage.write_bytes_atomic(report_url, "\n".join(sections).encode())  # last: the report names its plots
    if storage.is_local(folder):  # the atomic writes' staging folder, empty once every rename is done
        storage.remove_empty_folders(storage.temp_folder(folder))
    return {"stage": "report", "report": report_url, "plots": sorted(plots), "previous_run_date": previous,
            "skipped_empty_nights": skipped, "compared": task.output_area}


# "A night with rows": the manifest count that says how many rows a committed partition of the area holds.
ROWS = {"predictions": "rows", "entities": "rows", "curated": "curated_rows", "raw": "rows"}  # area -> its manifest's count of rows


def previous_night(lake: Lake, area: str, run_date: str) -> tuple[str | None, list[str]]:
    """The night to compare run_date with: the newest run_date BEFORE it (by date, whatever order the nights were
    committed in) whose committed `area` partition has rows, and the empty nights (committed, no rows) between the
    two, newest first. (None, empties) when no earlier night has rows."""
    skipped = []
    for date in reversed(lake.run_dates(area)):  # sorted YYYY-MM-DD: date order
        if date >= run_date:
            continue
        manifest = lake.read_manifest(area, date)
        if manifest and (manifest.get("counts") or {}).get(ROWS[area], 0):
            return date, skipped
        skipped.append(date)
    return None, skipped


def comparison_note(previous: str | None, skipped: list[str], what: str) -> str:
    """One sentence: which night the report compared with, and the empty nights it skipped to find it."""
    empties = (f" (skipped {len(skipped)} empty night(s) with no {what}: {', '.join(skipped)})" if skipped else "")
    if previous is None:
        return f"No earlier night with {what} to compare with{empties}."
    return f"Compared with run_date {previous}, the newest earlier night with {what}{empties}."


def tonight_model(lake: Lake, run_date: str) -> dict[str, Any] | None:
    """The manifest of the newest model trained for run_date (promoted or not), None when none was; its champion
    decision with a person's later answer folded in (`promotion.as_decided`), so an approved model reads as
    promoted and a rejected one as rejected."""
    manifests = committed_models(lake, run_date)
    if not manifests:
        return None
    return manifests[-1] | {"champion_decision": promotion.as_decided(lake, manifests[-1])}


def replaced_line(lake: Lake, manifest: dict[str, Any]) -> str:
    """For a report of an older night, rewritten after a later model won: that tonight's promoted model is no longer
    the champion, and which is ('' otherwise)."""
    champion = read_champion(lake)
    version = (manifest.get("metrics") or {}).get("model_version")
    if not (manifest.get("champion_decision") or {}).get("promoted") or not champion or \
            champion["model_version"] == version:
        return ""
    return f"\nIt has since been replaced as champion by {champion['model_version']}.\n"


def training_section(manifest: dict[str, Any]) -> str:
    """What tonight's model was trained on and why it was or was not promoted."""
    decision, training = manifest.get("champion_decision") or {}, manifest.get("training_set") or {}
    version = (manifest.get("metrics") or {}).get("model_version", "")
    rows = "\n".join(f"| {date} | {c['train']} | {c['validation']} | {c['test']} |"
                     for date, c in sorted((training.get("rows_by_night") or {}).items()))
    champion = decision.get("champion_validation_macro_f1")
    linear = decision.get("linear_baseline_validation_macro_f1")
    new_cell = figure_cell(decision.get("new_validation_macro_f1", 0), decision.get("new_validation_macro_f1_nested"))
    return (f"## Training\n\nModel {version} was {promotion.verdict(decision)}. "
            f"{decision.get('reason', '')}.\n\n"
            f"| validation macro-F1 | new model | champion ({decision.get('previous_champion') or 'none'}) | "
            f"best constant answer | TF-IDF baseline |\n|---|---|---|---|---|\n| {decision.get('validation_rows', 0)} "
            f"rows | {new_cell} | {'' if champion is None else f'{champion:.4f}'} "
            f"| {decision.get('baseline_validation_macro_f1', 0):.4f} | "
            f"{'none' if linear is None else f'{linear:.4f}'} |\n\n"
            + interval_line(decision.get("new_validation_macro_f1"), linear,
                            decision.get("linear_baseline_difference_interval"), "Validation macro-F1",
                            "TF-IDF baseline", decision.get("new_validation_macro_f1_nested"))
            + f"{adaptation_line((manifest.get('metrics') or {}).get('adaptation'))}"
            f"Training set: {training.get('corrections_applied', 0)} earlier row(s) relabelled by later nights' "
            "corrections; "
            f"{superseded_clause(training.get('superseded_versions', 0))}rows per night:\n\n"
            f"| run_date | train | validation | test |\n|---|---|---|---|\n{rows}\n")


def superseded_clause(superseded: int) -> str:
    """The older versions of re-sent ids that the training set left out, for the report ('' when none)."""
    if not superseded:
        return ""
    return (f"{superseded} older version(s) of ids sent again left out (only each id's newest labelled version is "
            "trained on); ")


def adaptation_line(adaptation: dict[str, Any] | None) -> str:
    """Domain adaptation before fine-tuning (train.domain_adaptation), in one paragraph; '' when it did not run."""
    if not adaptation:
        return ""
    work = (f"{adaptation.get('steps')} masked-LM steps over {adaptation.get('texts') or 0:,} of the lake's texts "
            f"(stopped by {adaptation.get('stopped_by')}, {adaptation.get('seconds')} s), held-out masked-LM loss "
            f"{adaptation.get('heldout_loss_before')} -> {adaptation.get('heldout_loss_after')}")
    if adaptation.get("reused"):  # made by an earlier run with the same key: tonight's texts were not read
        made = f" on {str(adaptation['committed_at'])[:10]}" if adaptation.get("committed_at") else ""
        return (f"Domain adaptation ({adaptation.get('reason')}): reused the model adapted{made} for the same base "
                f"model, tokenizer and settings ({work}), kept in `{adaptation.get('folder')}`; tonight adapted "
                "nothing and read none of tonight's texts for it. A change to the tokenizer (the vocabulary "
                "extension adding tokens) or to an adaptation setting adapts again.\n\n")
    return (f"Domain adaptation ({adaptation.get('reason')}): {work}; kept in `{adaptation.get('folder')}` and reused "
            "by later nights with the same base model, tokenizer and settings.\n\n")


def model_metrics(lake: Lake, model_version: str | None) -> dict[str, Any] | None:
    """metrics.json of the model that scored (of the model that stores it, for rows its TF-IDF baseline scored)."""
    if not model_version:
        return None
    return storage.read_json(storage.join(lake.model_url(baseline.model_version_of(model_version)), "metrics.json"))


def unscored_reason(cfg: PipelineConfig, lake: Lake) -> str:
    """Why a night with curated rows has no committed predictions."""
    from bert_pipeline.stages.score import no_model_reason

    if not cfg.score.model and storage.read_json(lake.champion_url) is None:
        return no_model_reason(cfg, lake)
    return "the score stage has not committed predictions for this night (it has not run, or it failed)"


def label_shares(lake: Lake, run_date: str) -> dict[str, Any] | None:
    """Rows per predicted label (a multi-label row counts for each of its labels) and a confidence sample of a
    committed predictions partition (None when absent)."""
    manifest = lake.read_manifest("predictions", run_date)
    if not manifest or not manifest["counts"]["rows"]:
        return None
    counts: dict[str, int] = {}
    confidences = []
    dataset = lake.dataset("predictions", {run_date: manifest})
    for batch in dataset.to_batches(columns=["predicted_labels", "confidence"]):  # batch by batch: small columns
        shard = pl.from_arrow(batch)
        for label, n in shard["predicted_labels"].explode().drop_nulls().value_counts().iter_rows():  # type: ignore[call-overload]
            counts[label] = counts.get(label, 0) + n
        confidences.append(shard["confidence"].to_numpy()[:20_000])  # type: ignore[call-overload]
    return {"run_date": run_date, "model_version": manifest.get("model_version"), "rows": manifest["counts"]["rows"],
            "labels": manifest["counts"].get("labels") or sorted(counts), "counts": counts,
            "confidence": np.concatenate(confidences)}


def coverage_section(tokens_manifest: dict[str, Any], threshold: float) -> str:
    """Vocabulary coverage of the night's tokens (bert_pipeline/text/coverage.py): shares, per script, the top unknown
    characters and words, and the warning with its advice when the unknown token share is above `threshold`."""
    coverage = tokens_manifest.get("coverage")
    source = (tokens_manifest.get("tokenizer") or {}).get("source") or "the base model"
    if not coverage:
        return ("## Coverage\n\nNot measured: the token partition of this night was committed before bert-pipeline "
                "measured vocabulary coverage (it is measured when tokenize next writes the night).\n")
    unknown = coverage.get("unknown_token")
    if unknown is None and coverage.get("drops_text"):
        head = (f"The tokenizer of {source} has no unknown token, and what its vocabulary cannot spell becomes no "
                f"token at all: {coverage['hidden_char_share']:.2%} of {coverage['chars']:,} characters are dropped "
                f"(threshold `tokenize.max_unknown_share` {threshold:.2%}); {coverage['texts_with_unknown']:,} of "
                f"{coverage['texts']:,} texts lose some.\n")
    elif unknown is None:
        head = (f"The tokenizer of {source} has no unknown token (byte-level): it reads every character; "
                f"{coverage['tokens']:,} tokens, {coverage['chars']:,} characters, coverage 100%.\n")
    else:
        head = (f"Tokenizer of {source}: {coverage['unknown_token_share']:.2%} of {coverage['tokens']:,} tokens are "
                f"the unknown token `{unknown}` (threshold `tokenize.max_unknown_share` {threshold:.2%}); "
                f"{coverage['hidden_char_share']:.2%} of {coverage['chars']:,} characters are hidden "
                f"{'(behind it, or deleted by the normaliser)' if coverage.get('stripped_chars') else 'behind it'}; "
                f"{coverage['texts_with_unknown']:,} of {coverage['texts']:,} texts hold at least one.\n")
    verdict = ""
    folded = ", ".join(f"{_code(c)} as {_code(into)} {n:,}" for c, into, n in coverage.get("folded_chars") or [])
    if folded:
        head += (f"\nThe tokenizer's normaliser reads these letters as others (so words that differ only there "
                 f"read the same; a cased or multilingual base model keeps them apart): {folded}.\n")
    pieces = cov.pieces_line(coverage)
    if pieces:
        head += (f"\nSpelled in pieces (more than {cov.MAX_TOKENS_PER_WORD:g} tokens per word, though no token is "
                 f"unknown; English takes about 1.3): {pieces}: the model reads these words nearly letter by "
                 "letter.\n")
    if cov.is_poor(coverage, threshold):
        verdict = (f"\n**Poor coverage**: the model cannot read much of this night's text. {cov.advice(coverage)} "
                   "`tokenize.on_poor_coverage: refuse` stops such a night before its token shards are written.\n")
    rows = "".join(f"| {script} | {r['tokens']:,} | {r['unknown_tokens']:,} | {r['unknown_token_share']:.2%} | "
                   f"{r['chars']:,} | {r['hidden_chars']:,} | {r['hidden_char_share']:.2%} | "
                   f"{r['tokens_per_word'] if 'tokens_per_word' in r else ''} |\n"
                   for script, r in (coverage.get("by_script") or {}).items())
    table = ("\n| script | tokens | unknown tokens | unknown share | characters | hidden characters | hidden share | "
             "tokens per word |\n|---|---|---|---|---|---|---|---|\n" + rows) if rows else ""
    chars = ", ".join(f"{_code(c)} {n:,}" for c, n in coverage.get("top_unknown_chars") or [])
    words = ", ".join(f"{_code(w)} {n:,}" for w, n in coverage.get("top_unknown_words") or [])
    tops = ((f"\nMost frequent unknown characters: {chars}.\n" if chars else "")
            + (f"\nMost frequent unknown words: {words}.\n" if words else "") + _normaliser_lines(coverage))
    return f"## Coverage\n\n{head}{vocabulary_line(tokens_manifest)}{verdict}{table}{tops}"


def length_line(tokens_manifest: dict[str, Any], cfg: PipelineConfig, scored_whole: bool = False) -> str:
    """How many of the night's texts are longer than max_length tokens, with tokenize's warning when the model
    reads only the start of too many of them (stages/tokenize.truncation_warning); '' when none is. scored_whole:
    a baseline scored the night (score.fallback: baseline), reading whole texts."""
    counts = tokens_manifest.get("counts") or {}
    rows, cut = counts.get("rows", 0), counts.get("truncated", 0)
    if not cut:
        return ""
    length = tokens_manifest.get("max_length") or cfg.tokenize.max_length
    # the length the night was tokenized at
    warning = truncation_warning(counts, cfg, max_length=length, scored_whole=scored_whole,
                                 coverage=tokens_manifest.get("coverage"))
    whole = " The night was scored by a baseline, which reads whole texts." if scored_whole else ""
    if warning:
        return f"\n**Long texts**: {warning[0].removeprefix('tokenize: ')}.{whole}\n"
    scoring = "" if scored_whole else f", score.long_text: {cfg.score.long_text}"
    return (f"\n{cut:,} of {rows:,} texts ({cut / rows:.1%}) are longer than `tokenize.max_length` {length} tokens "
            f"(train.long_text: {cfg.train.long_text}{scoring}).{whole}\n")


def vocabulary_line(tokens_manifest: dict[str, Any]) -> str:
    """What the vocabulary extension (tokenize.extend_vocabulary) did for the night: the unknown share before and
    after, the tokens added tonight and in all; '' when the night was read with the base tokenizer."""
    words = tokens_manifest.get("vocabulary") or {}
    if not words.get("extended"):
        return ""
    tonight = words.get("added_tonight") or {}
    before = words.get("unknown_token_share_before")
    scripts = ", ".join(f"{script} {n:,}" for script, n in sorted((tonight.get("by_script") or {}).items(),
                                                                    key=lambda kv: (-kv[1], kv[0])))
    top = " ".join(text for text, _ in (tonight.get("top") or [])[:10])
    change = (f"the unknown token share went from {before:.2%} (the tokenizer it started from) to "
              f"{words.get('unknown_token_share_after', 0.0):.2%}; " if before is not None else "")
    change += _pieces_change(words.get("coverage_before") or {}, tokens_manifest.get("coverage") or {})
    added = (f"{tonight.get('added', 0):,} tokens added tonight ({scripts}; most frequent: {top}), "
             if tonight.get("added") else "no token added tonight, ")
    return (f"\nThe night was read with the lake's extended vocabulary (`tokenize.extend_vocabulary`: "
            f"{words.get('extend_vocabulary')}): {change}{added}{words.get('added_total', 0):,} added to the base "
            "tokenizer in all.\n")


def _normaliser_lines(coverage: dict[str, Any]) -> str:
    """What the tokenizer's normaliser deletes before its vocabulary reads the text: characters of a script (hidden,
    counted in the shares above) and combining marks (not hidden: the words read as written without them)."""
    def shown(pairs: list[list[Any]]) -> str:
        return ", ".join(f"{_code(_visible(c))} {n:,}" for c, n in pairs[:10])

    lines = ""
    if coverage.get("stripped_chars"):
        lines += (f"\nDeleted by the tokenizer's normaliser before its vocabulary reads the text, so hidden though no "
                  f"token is unknown: {coverage['stripped_chars']:,} characters, most often "
                  f"{shown(coverage.get('top_stripped_chars') or [])}.\n")
    if coverage.get("removed_marks"):
        share = coverage["removed_marks"] / max(coverage.get("chars", 0), 1)
        lines += (f"\nThe normaliser also deletes {coverage['removed_marks']:,} combining marks ({share:.1%} of the "
                  f"characters), most often {shown(coverage.get('top_removed_marks') or [])}: vowel signs or accents "
                  "the model never sees. They are not counted as hidden (the words read as written without them, as "
                  "Arabic usually is); where they tell words apart, a cased or multilingual base model keeps them.\n")
    return lines


def _visible(char: str) -> str:
    """A combining mark shown on a dotted circle (◌َ), as Unicode's charts show it; other characters as they are."""
    return "\u25cc" + char if unicodedata.combining(char) else char


def _pieces_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """'tokens per word of Arabic went from 4.20 to 2.46; ' for each script the tokenizer it started from spelled in
    pieces (coverage.pieced_scripts): the reason an extension ran where no token was unknown; '' for none."""
    now = after.get("by_script") or {}
    return "".join(f"tokens per word of {script} went from {per_word:.2f} to "
                   f"{now.get(script, {}).get('tokens_per_word', float('nan')):.2f}; "
                   for script, per_word, _ in cov.pieced_scripts(before))


def _code(text: str) -> str:
    """Text as markdown inline code, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def curation_section(counts: dict[str, Any], notes: list[tuple[str, str]]) -> str:
    """Where the night's raw rows went, then the (title, warning) notes ingest and curate left in their manifests
    (texts mostly rejected, ids re-sent with unrelated texts, look-alike labels)."""
    raw = max(1, counts["raw_rows"])
    rows = [f"| curated | {counts['curated_rows']} | {counts['curated_rows'] / raw:.2%} |"]
    rows += [f"| rejected: {reason} | {n} | {n / raw:.2%} |" for reason, n in counts["rejected_by_reason"].items() if n]
    return ("## Curation\n\n" f"{counts['raw_rows']} raw rows = {counts['curated_rows']} curated + "
            f"{counts['rejected_rows']} rejected; {counts.get('label_conflicts', 0)} label conflicts; "
            f"{counts.get('label_corrections', 0)} of tonight's rows correct the label of an earlier night's row "
            "(several may correct one; the training set applies one correction per earlier row).\n\n"
            "| outcome | rows | share of raw |\n|---|---|---|\n" + "\n".join(rows) + "\n"
            + "".join(f"\n**{title}**: {warning}.\n" for title, warning in notes))


def model_section(metrics: dict[str, Any]) -> str:
    test, val = metrics["test"], metrics["validation"]
    multi = metrics.get("problem_type") == "multi_label"
    accuracy, (last, key) = ("subset accuracy" if multi else "accuracy"), (("micro-F1", "micro_f1") if multi
                                                                           else ("ECE", "ece"))
    table = (f"## Model {metrics['model_version']}\n\n| split | rows | {accuracy} | macro-F1 | {last} |\n"
             "|---|---|---|---|---|\n"
             + "".join(f"| {name} | {m.get('rows', 0)} | {m.get('accuracy', 0):.4f} | {m.get('macro_f1', 0):.4f} | "
                       f"{m.get(key, 0):.4f} |\n" for name, m in (("validation", val), ("test", test))))
    table += baseline_rows(metrics)
    if not multi:
        return table
    thresholds = metrics["calibration"].get("thresholds") or {}
    rows = "".join(f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} | "
                   f"{thresholds.get(name, 0.5):.2f} |\n" for name, c in (test.get("per_class") or {}).items())
    return (table + "\nTest, per label (multi-label; thresholds tuned on validation):\n\n"
            "| label | precision | recall | F1 | support | threshold |\n|---|---|---|---|---|---|\n" + rows)


def baseline_rows(metrics: dict[str, Any]) -> str:
    """The TF-IDF baseline fitted on the model's training rows, split by split next to the model's macro-F1."""
    linear = metrics.get("baseline")
    if not linear:
        return ("\nNo TF-IDF baseline is stored with this model (trained with train.linear_baseline: false, or "
                "before the baseline existed).\n")
    rows = "".join(f"| {name} | {linear[name].get('rows', 0)} | {metrics[name].get('macro_f1', 0):.4f} | "
                   f"{linear[name].get('macro_f1', 0):.4f} | "
                   f"{metrics[name].get('macro_f1', 0) - linear[name].get('macro_f1', 0):+.4f} |\n"
                   for name in ("validation", "test"))
    return (f"\nAgainst TF-IDF + logistic regression fitted on the same training rows ({linear.get('features')} "
            f"n-grams{baseline.feature_choice_words(linear.get('feature_choice'))}, "
            f"{linear.get('seconds', {}).get('total', 0):.1f} s):\n\n"
            "| split | rows | model macro-F1 | TF-IDF baseline macro-F1 | model - baseline |\n|---|---|---|---|---|\n"
            + rows)


REPORT_NIGHTS = 30
"""How many nights before a night its report's Scores section reads to say which model scored them: one manifest
read each, so a report costs the same on a lake of years as on one of a month (at least score.rescore_nights)."""


def same_model_line(lake: Lake, area: str, run_date: str, window: int) -> str:
    """Which earlier nights the model that scored run_date scored too (rescored by score.rescore_nights, said where
    their score was committed after run_date's, or scored by the same champion) and which another model did, among
    the max(window, REPORT_NIGHTS) nights before run_date (older ones are counted, not read), the newest five of
    each named; '' for none of either."""
    tonight_manifest = lake.read_manifest(area, run_date) or {}
    tonight, scored_at = tonight_manifest.get("model_hash"), str(tonight_manifest.get("committed_at") or "")
    if not tonight:
        return ""
    earlier = [d for d in lake.run_dates(area) if d < run_date]
    horizon = max(window, REPORT_NIGHTS)
    same, other = [], []
    for night in earlier[-horizon:]:
        manifest = lake.read_manifest(area, night) or {}
        rows = (manifest.get("counts") or {}).get("rows", 0)
        if manifest.get("model_hash") == tonight:  # committed after this night's score: rescored with its model
            again = ", rescored after this night's score" if scored_at and str(
                manifest.get("committed_at") or "") > scored_at else ""
            same.append(f"{night} ({rows:,} rows{again})")
        elif manifest.get("model_hash"):
            other.append(f"{night} ({manifest.get('model_version')})")
    line = f"\nThe same model's rows also fill {len(same)} earlier night(s): {newest(same)}." if same else ""
    if other:
        line += (f"\n{len(other)} earlier night(s) were scored by other models: {newest(other)} "
                 f"(`score.rescore_nights`: {window} nights before a night's score are brought up to its model).")
    if line and len(earlier) > horizon:
        line += (f"\nOf the nights before this one, the newest {horizon} were read; {len(earlier) - horizon} older "
                 "night(s) were not (each night's manifest names the model that scored it).")
    return line + "\n" if line else ""


def newest(items: list[str], shown: int = 5) -> str:
    """The last `shown` items, newest last, and how many more came before them."""
    more = f"{len(items) - shown} older and " if len(items) > shown else ""
    return more + ", ".join(items[-shown:])


def scored_by(version: str) -> str:
    """What scored a night's rows, as the report says it: a model, or the baseline stored with one."""
    for suffix, name in baseline.BASELINE_NAMES.items():
        if version.endswith(suffix):
            return (f"the {name} stored with model {baseline.model_version_of(version)} (score.fallback: baseline: "
                    f"no model has passed the champion gate), model_version {version}")
    return f"model {version}"


def score_section(now: dict[str, Any], before: dict[str, Any] | None, previous: str | None,
                  skipped: list[str] | None = None) -> str:
    lines = ["## Scores\n", f"{now['rows']} rows scored with {scored_by(now['model_version'] or '')}. "
             f"{comparison_note(previous, skipped or [], 'predictions')}\n",
             f"| label | rows | share | share on {previous or '(no earlier night)'} | change |", "|---|---|---|---|---|"]
    for label in now["labels"]:
        share = now["counts"].get(label, 0) / now["rows"]
        old = before["counts"].get(label, 0) / before["rows"] if before else None
        lines.append(f"| {label} | {now['counts'].get(label, 0)} | {share:.2%} | "
                     f"{'' if old is None else f'{old:.2%}'} | {'' if old is None else f'{share - old:+.2%}'} |")
    return "\n".join(lines) + "\n"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def plot_reject_reasons(counts: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    outcomes = {"curated": counts["curated_rows"], **{k: v for k, v in counts["rejected_by_reason"].items() if v}}
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(outcomes) + 1.2))
    ax.barh(list(outcomes), list(outcomes.values()), color=["tab:green"] + ["tab:red"] * (len(outcomes) - 1))
    ax.set_xscale("log")
    ax.set_xlabel("rows (log scale)")
    ax.set_title(f"rows by curation outcome (raw {counts['raw_rows']})")
    return _png(fig)


def plot_confusion(metrics: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    matrix, labels = np.asarray(metrics["test"].get("confusion_matrix") or [[0]]), metrics["label_names"]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix ({metrics['test'].get('rows', 0)} rows)")
    return _png(fig)


def plot_per_label_f1(metrics: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    per_class = metrics["test"].get("per_class") or {}
    labels = list(per_class)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1.5))
    ax.barh(labels, [per_class[k]["f1"] for k in labels], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("test F1")
    ax.set_title(f"test F1 per label (macro-F1 {metrics['test'].get('macro_f1', 0):.3f}, "
                 f"{metrics['test'].get('rows', 0)} rows)")
    return _png(fig)


def plot_label_frequency(metrics: dict[str, Any], scores: dict[str, Any] | None) -> bytes:
    import matplotlib.pyplot as plt

    per_class, rows = metrics["test"].get("per_class") or {}, max(1, metrics["test"].get("rows", 0))
    labels = list(per_class)
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.5))
    ax.barh(y - 0.2, [per_class[k]["support"] / rows for k in labels], 0.4, label="test rows (true)")
    if scores:
        ax.barh(y + 0.2, [scores["counts"].get(k, 0) / scores["rows"] for k in labels], 0.4,
                label=f"predicted, run_date {scores['run_date']}")
    ax.set_yticks(y, labels)
    ax.set_xlabel("share of rows with the label")
    ax.set_title("label frequency")
    ax.legend()
    return _png(fig)


def plot_score_distribution(scores: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores["confidence"], bins=40, range=(0, 1), color="tab:blue")
    ax.set_xlabel("confidence: the highest probability of any label")
    ax.set_ylabel("rows")
    ax.set_title(f"score distribution, run_date {scores['run_date']}")
    return _png(fig)


def plot_score_change(now: dict[str, Any], before: dict[str, Any] | None, previous: str | None) -> bytes:
    import matplotlib.pyplot as plt

    labels = now["labels"]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.5 * len(labels) + 3, 4))
    if before:
        ax.bar(x - 0.2, [before["counts"].get(k, 0) / before["rows"] for k in labels], 0.4, label=previous)
    ax.bar(x + (0.2 if before else 0), [now["counts"].get(k, 0) / now["rows"] for k in labels], 0.4,
           label=now["run_date"])
    ax.set_xticks(x, labels)
    ax.set_ylabel("share of rows")
    ax.set_title(f"predicted-label shares against run_date {previous}" if before else
                 "predicted-label shares (no earlier night with predictions)")
    ax.legend()
    return _png(fig)


class ClassifierReport:
    """The report's model and score sections for classification (the functions above)."""

    def scores(self, lake: Lake, run_date: str) -> dict[str, Any] | None:
        return label_shares(lake, run_date)

    def training_section(self, manifest: dict[str, Any]) -> str:
        return training_section(manifest)

    def model_section(self, metrics: dict[str, Any]) -> str:
        return model_section(metrics)

    def model_plots(self, metrics: dict[str, Any], scores: dict[str, Any] | None) -> dict[str, bytes]:
        if metrics.get("problem_type") == "multi_label":
            return {"per_label_f1.png": plot_per_label_f1(metrics),
                    "label_frequency.png": plot_label_frequency(metrics, scores)}
        return {"confusion_matrix.png": plot_confusion(metrics)}

    def score_section(self, now: dict[str, Any], before: dict[str, Any] | None, previous: str | None,
                      skipped: list[str]) -> str:
        return score_section(now, before, previous, skipped)

    def score_plots(self, now: dict[str, Any], before: dict[str, Any] | None,
                    previous: str | None) -> dict[str, bytes]:
        return {"score_distribution.png": plot_score_distribution(now),
                "score_change.png": plot_score_change(now, before, previous)}


def _report_for_entities() -> Any:
    from bert_pipeline.stages.report_entities import EntityReport  # the task's own module

    return EntityReport()


# task -> its report sections (bert_pipeline/task names the tasks)
REPORTS: dict[str, Callable[[], Any]] = {"classification": ClassifierReport, "ner": _report_for_entities}
