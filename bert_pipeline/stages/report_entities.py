"""The nightly report's model and score sections for task: ner (report.py composes them; curation and coverage
are shared): the gate's figures (entity F1 of the new model, the champion and the CRF and memorising baselines), precision,
recall and F1 per entity type with support, the confusion of types, and the entities found per type tonight against
the newest earlier night."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from bert_pipeline.lake.manifests import Lake
from bert_pipeline.evaluation import promotion, registry
from bert_pipeline.stages.report import adaptation_line, comparison_note, scored_by


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


class EntityReport:
    def scores(self, lake: Lake, run_date: str) -> dict[str, Any] | None:
        """Entities per type, rows with at least one entity and the mean entity score of a committed entities
        partition (None when absent or empty)."""
        manifest = lake.read_manifest("entities", run_date)
        if not manifest or not manifest["counts"]["rows"]:
            return None
        counts: dict[str, int] = {}
        rows_with, scores = 0, []
        for batch in lake.dataset("entities", {run_date: manifest}).to_batches(columns=["entities"]):
            found = pl.from_arrow(batch)["entities"]  # type: ignore[index]
            rows_with += int((found.list.len() > 0).sum())
            flat = found.explode().drop_nulls().struct.unnest()
            if flat.height:
                for label, n in flat["label"].value_counts().iter_rows():
                    counts[label] = counts.get(label, 0) + n
                scores.append(flat["score"].to_numpy())
        every = np.concatenate(scores) if scores else np.zeros(0)
        return {"run_date": run_date, "model_version": manifest.get("model_version"),
                "rows": manifest["counts"]["rows"], "rows_with_entities": rows_with, "counts": counts,
                "entities": int(sum(counts.values())), "mean_score": float(every.mean()) if len(every) else None}

    def training_section(self, manifest: dict[str, Any]) -> str:
        decision, training = manifest.get("champion_decision") or {}, manifest.get("training_set") or {}
        version = (manifest.get("metrics") or {}).get("model_version", "")
        rows = "\n".join(f"| {date} | {c['train']} | {c['validation']} | {c['test']} |"
                         for date, c in sorted((training.get("rows_by_night") or {}).items()))
        new_cell = registry.figure_cell(decision.get("new_validation_entity_f1"),
                                        decision.get("new_validation_entity_f1_nested"))
        return (f"## Training\n\nEntity model {version} was {promotion.verdict(decision)}. "
                f"{decision.get('reason', '')}.\n\n"
                f"| validation entity F1 | new model | champion ({decision.get('previous_champion') or 'none'}) | "
                f"CRF baseline | memorising baseline |\n|---|---|---|---|---|\n| "
                f"{decision.get('validation_entities', 0)} entities in "
                f"{decision.get('validation_rows', 0)} rows | {new_cell} | "
                f"{_f(decision.get('champion_validation_entity_f1'))} | {_f(decision.get('crf_validation_entity_f1'))} "
                f"| {_f(decision.get('memorising_validation_entity_f1'))} |\n\n"
                + registry.interval_line(decision.get("new_validation_entity_f1"),
                                         decision.get("crf_validation_entity_f1"),
                                         decision.get("crf_difference_interval"), "Validation entity F1",
                                         "CRF baseline", decision.get("new_validation_entity_f1_nested"))
                + f"{adaptation_line((manifest.get('metrics') or {}).get('adaptation'))}"
                f"Training set: {training.get('corrections_applied', 0)} earlier row(s) relabelled by later "
                f"nights' corrections; rows per night:\n\n| run_date | train | validation | test |\n"
                f"|---|---|---|---|\n{rows}\n")

    def model_section(self, metrics: dict[str, Any]) -> str:
        splits = (("validation", metrics["validation"]), ("test", metrics["test"]))
        table = "".join(f"| {name} | {m.get('rows', 0)} | {m.get('entities', 0)} | {_f(m.get('precision'))} | "
                        f"{_f(m.get('recall'))} | {_f(m.get('entity_f1'))} | {_f(m.get('entity_macro_f1'))} |\n"
                        for name, m in splits)
        base = metrics.get("baseline") or {}
        crf = base.get("crf") or {}
        fitted = f"fitted in {crf.get('seconds')} s" if crf else "not fitted"
        baseline = "".join(f"| {name} | {_f(m.get('entity_f1'))} | {_f((crf.get(name) or {}).get('entity_f1'))} | "
                           f"{_f((base.get(name) or {}).get('entity_f1'))} |\n" for name, m in splits) if base else ""
        types = "".join(f"| {kind} | {m['support']} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} |\n"
                        for kind, m in (metrics["test"].get("per_type") or {}).items())
        confusion = "".join(f"| {c['gold']} | {c['predicted']} | {c['count']} |\n"
                            for c in metrics["test"].get("type_confusion") or [])
        return (f"## Model {metrics['model_version']}\n\nExact-match entities (start, end and type), as seqeval's "
                "strict IOB2 mode counts them.\n\n| split | rows | entities | precision | recall | entity F1 (micro) "
                f"| entity F1 (macro) |\n|---|---|---|---|---|---|---|\n{table}"
                + (f"\nAgainst the baselines fitted on the same training rows: the CRF (train.linear_baseline; "
                   f"{fitted}) "
                   f"and the memorising baseline ({base.get('entries')} strings seen as entities in training):\n\n"
                   "| split | model entity F1 | CRF baseline | memorising baseline |\n|---|---|---|---|\n" + baseline
                   if base else "")
                + f"\nTest, per type:\n\n| type | entities | precision | recall | F1 |\n|---|---|---|---|---|\n{types}"
                + ("\nTest, spans found with the right boundaries but another type:\n\n| gold type | predicted type "
                   f"| spans |\n|---|---|---|\n{confusion}" if confusion else
                   "\nNo test span was found with the right boundaries but another type.\n"))

    def model_plots(self, metrics: dict[str, Any], scores: dict[str, Any] | None) -> dict[str, bytes]:
        return {}

    def score_section(self, now: dict[str, Any], before: dict[str, Any] | None, previous: str | None,
                      skipped: list[str]) -> str:
        lines = ["## Entities\n", f"{now['rows']} rows scored with {scored_by(now['model_version'] or '')}: "
                 f"{now['entities']} entities in {now['rows_with_entities']} rows "
                 f"({now['rows_with_entities'] / now['rows']:.2%})"
                 + (f", mean entity score {now['mean_score']:.3f}" if now["mean_score"] is not None else "") + ". "
                 f"{comparison_note(previous, skipped, 'entities')}\n",
                 f"| type | entities | per 100 rows | per 100 rows on {previous or '(no earlier night)'} | change |",
                 "|---|---|---|---|---|"]
        for kind in sorted(set(now["counts"]) | set((before or {}).get("counts") or {})):
            rate = 100 * now["counts"].get(kind, 0) / now["rows"]
            old = 100 * before["counts"].get(kind, 0) / before["rows"] if before else None
            lines.append(f"| {kind} | {now['counts'].get(kind, 0)} | {rate:.1f} | "
                         f"{'' if old is None else f'{old:.1f}'} | {'' if old is None else f'{rate - old:+.1f}'} |")
        return "\n".join(lines) + "\n"

    def score_plots(self, now: dict[str, Any], before: dict[str, Any] | None,
                    previous: str | None) -> dict[str, bytes]:
        return {}
