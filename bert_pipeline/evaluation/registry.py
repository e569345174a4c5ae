"""The model registry: versioned model folders under models/, the champion gate, and `models/_champion.json`.

The gate (`gate`) promotes a new model only when, on this run's validation rows compared by label *name*:
  1. its macro-F1 beats the best constant answer (single-label: always the most frequent validation label, the
     majority-class baseline; multi-label: every validation label for every row, see `multilabel`): the best
     macro-F1 any model that answers the same for everything can reach, and
  2. with `train.linear_baseline` (the default), its macro-F1 beats that of TF-IDF + logistic regression fitted on
     the same training rows (`baseline`): a fine-tuned model that a bag of n-grams beats is not worth serving, and
  3. when a champion exists, its macro-F1 is at least the champion's minus `train.champion_tolerance`.
In 1 and 2 the new model's figure is its two-fold nested validation macro-F1 (`evaluation.selection`: each half of
the validation rows answered at the epoch the other half chose), since training chose its epoch on these rows and
the baselines chose nothing on them; in 3 it is the plain figure, as the champion's was chosen on rows like these.
The champion is re-evaluated on the same rows (re-tokenized with its own tokenizer when that differs); a label the
champion lacks counts as wrong for it, so a label-set change is compared like anything else, never waved through.
Every decision records both numbers and the baseline. A refused model stays in the registry, marked as refused in
its manifest and model card, and scoring keeps using the champion.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
import logging
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from bert_pipeline.lake import storage
from bert_pipeline.errors import ConfigError
from bert_pipeline.modeling.inference import predict_logits
from bert_pipeline.lake.manifests import Lake, utc_now
from bert_pipeline.evaluation import baseline as linear_baseline, selection
from bert_pipeline.modeling.models import fast_encoder, load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.modeling.multilabel import (
    is_multi_label, multi_hot, names_of, predicted_sets, sigmoid, thresholds_of, tune_thresholds,
)
from bert_pipeline.text.encoding import encode_texts
from bert_pipeline.training.trainset import SplitData, texts_of
from bert_pipeline.modeling.windows import Windowing

Answer = str | tuple[str, ...]  # one row's label(s) by name: a label, or a multi-label row's set in label order

log = logging.getLogger(__name__)


def macro_f1_by_name(true: Sequence[Answer], predicted: Sequence[Answer]) -> float:
    """Macro-F1 over the labels present in either list (scikit-learn's default set of classes), matched by name.
    A row's answer is a label or (multi-label) a tuple of them, read as a set; single-label macro-F1 is the same
    figure as `metrics.classification_report`'s, multi-label as `metrics.multilabel_report`'s."""
    if not len(true):
        return 0.0
    names = sorted(set().union(*_as_sets(true), *_as_sets(predicted)))
    return selection.f1_of(answer_counts(true, predicted, names).sum(0), "macro")


def _as_sets(answers: Sequence[Answer]) -> list[tuple[str, ...]]:
    return [x if isinstance(x, tuple) else (x,) for x in answers]


def answer_counts(true: Sequence[Answer], predicted: Sequence[Answer], names: Sequence[str]) -> np.ndarray:
    """(tp, fp, fn) per row and label of answers by name against the truths, labels in `names` order (a name
    outside it is left out): int64 [rows, len(names), 3] (`selection.row_counts`)."""
    gold = multi_hot(_as_sets(true), names).astype(bool)
    return selection.row_counts(gold, multi_hot(_as_sets(predicted), names).astype(bool))


def majority_label(labels: Sequence[str]) -> str:
    """The most frequent label (ties: the first by name): what the majority-class baseline always predicts."""
    counts = Counter(labels)
    return min(counts, key=lambda name: (-counts[name], name))


def constant_baseline(true: Sequence[Answer], multi_label: bool) -> Answer:
    """The constant answer with the best macro-F1 on `true`: the majority label, or (multi-label) the set of every
    label that occurs in `true`."""
    if multi_label:
        return tuple(sorted(set().union(*(x if isinstance(x, tuple) else (x,) for x in true))))
    return majority_label(true)  # type: ignore[arg-type]


def falls_short(new: float, baseline: float) -> bool:
    """Whether a new model's validation score (F1 in [0, 1]) fails to beat a baseline's, as the gate asks: strictly,
    since a tie tells nothing, except a tie at a perfect 1.0, which nothing can beat (the validation rows cannot tell
    the two apart; `versus` and `perfect_tie_note` say so)."""
    return new <= baseline and new < 1.0


def _perfect_tie(new: float, baseline: float | None) -> bool:
    return baseline is not None and new >= 1.0 and baseline >= 1.0


_CANNOT_TELL = ("these validation rows cannot tell the model from it; more varied labelled rows, or a larger "
                "curate.validation_fraction, would")


def versus(new: float, baseline: float, what: str) -> str:
    """'beats the TF-IDF baseline 0.8190', or on a perfect tie 'ties the TF-IDF baseline at a perfect 1.0000 (...)':
    how a promoted model stands against the baseline `what` in its gate reason."""
    if _perfect_tie(new, baseline):
        return f"ties the {what} at a perfect 1.0000 ({_CANNOT_TELL})"
    return f"beats the {what} {baseline:.4f}"


def perfect_tie_note(new: float, baseline: float | None, what: str) -> str:
    """'' unless both scores are a perfect 1.0: then that note, for a reason that lists the baseline's figure."""
    return f" (a tie at a perfect 1.0 with the {what}: {_CANNOT_TELL})" if _perfect_tie(new, baseline) else ""


@dataclass(frozen=True)
class Margin:
    """train.baseline_margin as the gates apply it: `rule` "figure" (the point figures decide) or "interval" (the
    model must also lead its baseline by more than the rows' noise: `within_noise`); `why` says why under auto
    ("" when the setting named the rule). str(): what a decision records, e.g. "interval: auto: tonight's
    vocabulary coverage is poor"."""

    rule: Literal["figure", "interval"] = "figure"
    why: str = ""

    def __str__(self) -> str:
        return f"{self.rule}: {self.why}" if self.why else self.rule


def gate(true: Sequence[Answer], new: Sequence[Answer], majority: Answer, label_names: Sequence[str],
         champion: dict[str, Any] | None, champion_predicted: Sequence[Answer] | None,
         tolerance: float, linear_predicted: Sequence[Answer] | None = None,
         nested: float | None = None, margin: Margin = Margin()) -> dict[str, Any]:
    """The champion decision for a new model, from validation labels and predictions by name (pure).

    `champion_predicted` is None when a champion exists but could not be run (its folder is gone, so scoring could
    not use it either): the new model is then held to the baseline alone, and the reason says so.
    `linear_predicted`: the TF-IDF baseline's answers on the same rows (`baseline`, train.linear_baseline), which
    the new model must beat in macro-F1 (strictly, as the constant answer); None = no such check.
    `nested`: the new model's two-fold nested validation macro-F1 (`evaluation.selection`: each half of these rows
    answered at the epoch the other half chose), which is what the baselines are compared with, since they chose
    nothing on these rows; None = the plain figure (no per-epoch counts). The champion, itself chosen on rows like
    these, is compared with the plain figure.
    `margin`: under the "interval" rule (`Margin`, from train.margin_of) the model must also be ahead of the TF-IDF
    baseline by more than the rows' noise, the 90 % paired bootstrap interval's lower end above 0
    (`answers_interval`; `within_noise`).
    """
    rows = len(true)
    kind = "majority-class baseline" if isinstance(majority, str) else "best constant answer"
    new_f1 = macro_f1_by_name(true, new)
    judged, figure = held_figure(new_f1, nested, "validation macro-F1")
    baseline = macro_f1_by_name(true, [majority] * rows)
    share = Counter(new).most_common(1)[0] if rows else (None, 0)
    theirs = macro_f1_by_name(true, champion_predicted) if champion and champion_predicted is not None else None
    linear = macro_f1_by_name(true, linear_predicted) if linear_predicted is not None else None
    interval = answers_interval(true, new, linear_predicted) if linear_predicted is not None else None
    told = tell_apart_note(interval, rows, "validation rows", "TF-IDF baseline")
    decision: dict[str, Any] = {
        "validation_rows": rows, "new_validation_macro_f1": new_f1, "baseline_validation_macro_f1": baseline,
        "baseline_label": majority, "champion_validation_macro_f1": theirs,
        "champion_run_on_these_rows": champion_predicted is not None and bool(rows),
        "previous_champion": champion and champion["model_version"], "new_top_predicted_label": share[0],
        "new_top_predicted_share": share[1] / rows if rows else None, "tolerance": tolerance,
        "linear_baseline_validation_macro_f1": linear, "new_validation_macro_f1_nested": nested,
        "linear_baseline_difference_interval": interval, "baseline_margin": str(margin),
    }
    if len(set(true)) < 2:  # one answer: always giving it scores 1.0, so nothing tells learning from guessing
        what = "label(s)" if isinstance(majority, str) else "distinct label set(s)"
        return decision | {"promoted": False, "reason": (
            f"the {rows} labelled validation rows hold {len(set(true))} {what}: nothing to compare models on; give "
            "the sources more labelled rows or raise curate.validation_fraction")}
    if judged <= baseline:
        one_class = f"; it predicts {share[0]!r} for {share[1] / rows:.0%} of them" if share[1] / rows > 0.95 else ""
        return decision | {"promoted": False, "reason": (
            f"{figure} does not beat the {kind} {baseline:.4f} (always "
            f"{majority!r}) on {rows} validation rows{one_class}: the model learned too little to be trusted")}
    if linear is not None and falls_short(judged, linear):
        return decision | {"promoted": False, "reason": (
            f"{figure} does not beat the TF-IDF baseline {linear:.4f} on {rows} validation "
            "rows: TF-IDF + logistic regression trained on the same rows does better; train longer (train.epochs, "
            "train.min_steps), use a base model whose vocabulary covers the text (train.base_model), or set "
            f"train.linear_baseline: false{told}")}
    if linear is not None and (refusal := within_noise(figure, interval, margin, rows, "validation rows",
                                                         f"TF-IDF baseline {linear:.4f}")):
        return decision | {"promoted": False, "reason": refusal}
    if champion is None or theirs is None:
        missing = "no champion yet" if champion is None else (
            f"champion {champion['model_version']} could not be loaded, so it is compared with the baseline alone")
        against_linear = "" if linear is None else f" and {versus(judged, linear, 'TF-IDF baseline')}"
        return decision | {"promoted": True, "reason": f"{figure} beats the {kind} "
                           f"{baseline:.4f}{against_linear}{told}; {missing}"}
    labels_note = ""
    if set(champion.get("label_names") or []) != set(label_names):
        labels_note = f"; the champion's labels are {champion.get('label_names')}"
    promote = new_f1 >= theirs - tolerance
    verdict = "beats or ties" if new_f1 >= theirs else ("is within tolerance of" if promote else "is worse than")
    return decision | {"promoted": promote, "reason": (
        f"validation macro-F1 {new_f1:.4f} {verdict} champion {champion['model_version']} at {theirs:.4f} on the "
        f"same {rows} validation rows, by label name (baseline {baseline:.4f}{linear_note(linear)}){labels_note}"
        f"{perfect_tie_note(new_f1, linear, 'TF-IDF baseline')}{told}")}


def held_figure(plain: float, nested: float | None, name: str) -> tuple[float, str]:
    """(the figure the baselines are compared with, how a reason states it): the nested figure when there is one
    and it differs from the plain one, e.g. 'validation macro-F1 0.6400 (0.7100 at the epoch these rows chose; each
    half scored at the epoch the other half chose)', else the plain figure."""
    if not _shows_nested(plain, nested):
        return (plain if nested is None else nested), f"{name} {plain:.4f}"
    return nested, (f"{name} {nested:.4f} ({plain:.4f} at the epoch these rows chose; each half scored at the epoch "
                    "the other half chose)")


def answers_interval(true: Sequence[Answer], ours: Sequence[Answer],
                     theirs: Sequence[Answer]) -> tuple[float, float] | None:
    """The 90 % paired bootstrap interval of macro-F1(ours) - macro-F1(theirs) on the same rows, by label name
    (`selection.difference_interval` of `answer_counts`); None without rows."""
    names = sorted(set().union(*_as_sets(true), *_as_sets(ours), *_as_sets(theirs)))
    return selection.difference_interval(answer_counts(true, ours, names), answer_counts(true, theirs, names),
                                         "macro")


def within_noise(figure: str, interval: tuple[float, float] | None, margin: Margin, count: int, what: str,
                 baseline: str) -> str | None:
    """The refusal when `margin`'s rule is "interval" and the difference's interval does not lie above 0 (the model
    is not ahead by more than these rows' noise), else None."""
    if margin.rule != "interval" or interval is None or interval[0] > 0:
        return None
    why = f", {margin.why}" if margin.why else ""
    return (f"{figure} is not ahead of the {baseline} by more than these {count} {what} can tell: "
            f"{_interval_words(interval)} (train.baseline_margin: interval{why}); while the lake has no champion, "
            "score.fallback: baseline scores with the baseline. More labelled rows, or train.baseline_margin: "
            "figure, would let a model ahead on the figures through")


def tell_apart_note(interval: tuple[float, float] | None, count: int, what: str, baseline: str) -> str:
    """'' when the difference's interval (`answers_interval`) leaves out 0, is a single point (the two answered
    alike: a tie, said elsewhere) or is None, else '; these 118 validation rows cannot tell it from the TF-IDF
    baseline (the difference's 90 % paired bootstrap interval is -0.0512 to +0.1203)': for a reason, whatever the
    decision."""
    if interval is None or interval[0] > 0 or interval[1] < 0 or interval[0] == interval[1]:
        return ""
    return f"; these {count} {what} cannot tell it from the {baseline} ({_interval_words(interval)})"


def _interval_words(interval: Sequence[float]) -> str:
    return (f"the difference's {selection.LEVEL * 100:.0f} % paired bootstrap interval is {interval[0]:+.4f} to "
            f"{interval[1]:+.4f}")


def interval_line(new: float | None, theirs: float | None, interval: Sequence[float] | None, figure: str,
                  baseline: str, nested: float | None = None) -> str:
    """The report's paragraph on the difference between the new model's validation figure and a baseline's, with
    its paired bootstrap interval ('' without one), e.g. 'Validation macro-F1, new model minus TF-IDF baseline:
    +0.0400 (90 % paired bootstrap interval -0.0512 to +0.1203, 1000 resamples of these rows): these rows cannot
    tell the two apart.' The interval resamples the answers at the epoch these rows chose (the plain figure); when
    the nested figure (`held_figure`), which the gate compares with the baseline, differs, the paragraph gives its
    difference too, so that a refusal the plain difference would not explain reads true."""
    if new is None or theirs is None or not interval:
        return ""
    low, high = interval
    if low == high:
        verdict = "the two answered alike"
    elif low <= 0 <= high:
        verdict = "these rows cannot tell the two apart"
    else:
        leader = "the new model" if low > 0 else f"the {baseline}"
        verdict = f"{leader} is ahead in at least {(1 + selection.LEVEL) * 50:.0f} % of the resamples"
    held = (f" The gate compares the nested figure (each half scored at the epoch the other half chose): "
            f"{nested - theirs:+.4f}." if _shows_nested(new, nested) else "")
    return (f"{figure}, new model minus {baseline}: {new - theirs:+.4f} ({selection.LEVEL * 100:.0f} % paired "
            f"bootstrap interval {low:+.4f} to {high:+.4f}, {selection.RESAMPLES} resamples of these rows): {verdict}."
            f"{held}\n\n")


def figure_cell(plain: float | None, nested: float | None) -> str:
    """A new model's validation figure for a table: '0.7100', or '0.7100 (nested 0.6400)' when its nested figure
    (`held_figure`) differs; '' without a figure."""
    if plain is None:
        return ""
    return f"{plain:.4f}" + (f" (nested {nested:.4f})" if _shows_nested(plain, nested) else "")


def _shows_nested(plain: float, nested: float | None) -> bool:
    """Whether a nested figure differs from the plain one as the reasons and tables print them (4 decimals)."""
    return nested is not None and round(nested, 4) != round(plain, 4)


def linear_note(linear: float | None) -> str:
    return "" if linear is None else f" and the TF-IDF baseline {linear:.4f}"


def lineage_refusal(run_date: str, nights: Sequence[str], window_first: str,
                    champion_manifest: dict[str, Any]) -> str | None:
    """Why a new model must not replace the champion whatever its score, or None: it was trained for an older
    run_date than the champion (a backfill or a rerun of a past night), or its training set lacks nights the champion
    was trained on (inside the new model's window, `window_first` on; '' = no window). A tie on a few validation
    rows must not put an older view of the lake in charge; `train.promote_older: true` allows it."""
    theirs = str(champion_manifest.get("run_date") or "")
    version = champion_manifest.get("model_version") or (champion_manifest.get("metrics") or {}).get("model_version")
    if theirs and run_date < theirs:
        return (f"this model is trained for run_date {run_date}, older than champion {version}'s {theirs} (a "
                "backfill or a rerun of a past night): it is not promoted over a champion that saw newer nights; "
                "set train.promote_older: true to allow it")
    seen = set((champion_manifest.get("training_set") or {}).get("run_dates") or [])
    missing = sorted(d for d in seen - set(nights) if d >= window_first)
    if missing:
        return (f"its training set lacks night(s) {missing} that champion {version} was trained on: it is not "
                "promoted over a champion that saw more of the lake; run curate/tokenize for those nights, or set "
                "train.promote_older: true to allow it")
    return None


def read_champion(lake: Lake) -> dict[str, Any] | None:
    return storage.read_json(lake.champion_url)


def promote(lake: Lake, model_version: str, label_names: list[str], decision: dict[str, Any]) -> None:
    """Make model_version the champion (an atomic write of models/_champion.json)."""
    storage.write_json_atomic(lake.champion_url, {
        "model_version": model_version, "validation_macro_f1": decision.get("new_validation_macro_f1"),
        **({"validation_entity_f1": decision["new_validation_entity_f1"]}
           if "new_validation_entity_f1" in decision else {}),
        "label_names": label_names, "promoted_at": utc_now(), "decision": decision,
    })


def committed_models(lake: Lake, run_date: str = "*") -> list[dict[str, Any]]:
    """The manifests of the models committed for run_date (every run_date by default), oldest commit first,
    promoted or not."""
    pattern = storage.join(lake.models, f"{run_date}-*" if run_date != "*" else "*", "_manifest.json")
    manifests = [m for m in map(storage.read_json, storage.glob(pattern)) if m]
    return sorted(manifests, key=lambda m: m.get("committed_at", ""))


def model_manifest(lake: Lake, model_version: str) -> dict[str, Any]:
    return storage.read_json(storage.join(lake.model_url(model_version), "_manifest.json")) or {}


def write_model_folder(model_url: str, model: Any, tokenizer: Any, metrics: dict[str, Any], card: str,
                       baseline: Any = None) -> None:
    """Upload the HF folder (weights, tokenizer), metrics.json, calibration.json, the model card README.md and, when
    given, the TF-IDF baseline under baseline/ (`baseline.LinearBaseline.save`: JSON and safetensors, no pickle)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        if baseline is not None:
            baseline.save(os.path.join(tmp, "baseline"))
        tokenizer.save_pretrained(tmp)
        storage.write_json_atomic(os.path.join(tmp, "metrics.json"), metrics)
        storage.write_json_atomic(os.path.join(tmp, "calibration.json"), metrics["calibration"])
        with open(os.path.join(tmp, "README.md"), "w") as handle:
            handle.write(card)
        storage.upload_folder(tmp, model_url)


def commit_model(lake: Lake, model_version: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the model's _manifest.json: last, it commits the folder."""
    storage.write_json_atomic(storage.join(lake.model_url(model_version), "_manifest.json"), manifest)
    return manifest


def model_card(model_version: str, run_date: str, base_model: str, metrics: dict[str, Any],
               training_set: dict[str, Any], decision: dict[str, Any], recipe: str,
               fingerprints: dict[str, str]) -> str:
    """The model folder's README.md: status, labels, metrics, the nights and rows it was trained on."""
    test, val = metrics["test"], metrics["validation"]
    status = ("**Champion**" if decision.get("promoted") else "**Not promoted** (kept for inspection; scoring uses "
              "the champion)") + f": {decision.get('reason')}."
    nights = "\n".join(f"| {date} | {c['train']} | {c['validation']} | {c['test']} | "
                       f"{training_set['token_source'].get(date, '')} |"
                       for date, c in sorted(training_set["rows_by_night"].items()))
    multi = metrics.get("problem_type") == "multi_label"
    last = ("micro-F1", "micro_f1") if multi else ("ECE", "ece")
    accuracy = "subset accuracy" if multi else "accuracy"
    calibration = metrics["calibration"]
    calibrated = (f"Per-label decision thresholds (calibration.json): {json.dumps(calibration.get('thresholds'))}"
                  if multi else f"Softmax temperature {calibration['temperature']:.3f} (calibration.json)")
    return (
        f"# {model_version}\n\n{status}\n\nText classifier fine-tuned by bert-pipeline for run_date {run_date} from "
        f"`{base_model}`.\n\nLabels ({'multi-label' if multi else 'single-label'}): "
        f"{', '.join(metrics['label_names'])}\n\n"
        f"| split | rows | {accuracy} | macro-F1 | {last[0]} |\n|---|---|---|---|---|\n"
        + "".join(f"| {name} | {m.get('rows', 0)} | {m.get('accuracy', 0):.4f} | {m.get('macro_f1', 0):.4f} | "
                  f"{m.get(last[1], 0):.4f} |\n" for name, m in (("validation", val), ("test", test)))
        + f"\nBest constant answer on validation: macro-F1 {decision.get('baseline_validation_macro_f1', 0):.4f} "
        f"(always {decision.get('baseline_label')!r}).\n\n"
        + linear_baseline_line(metrics.get("baseline"))
        + f"Training set: the labelled rows of {len(training_set['rows_by_night'])} night(s), "
        f"{training_set['corrections_applied']} label correction(s) applied"
        + (f", rows of labels without training rows left out: {training_set['dropped_unseen_labels']}"
           if training_set["dropped_unseen_labels"] else "") + ".\n\n"
        f"| run_date | train | validation | test | token ids from |\n|---|---|---|---|---|\n{nights}\n\n"
        f"Recipe: {recipe}. {calibrated}.\n\n"
        f"Fingerprints: {json.dumps(fingerprints)}\n"
    )


def linear_baseline_line(baseline: dict[str, Any] | None) -> str:
    """The model card's line on the TF-IDF baseline fitted on the same rows ('' when train.linear_baseline is off)."""
    if not baseline:
        return ""
    return (f"TF-IDF + logistic regression on the same training rows ({baseline.get('features')} n-grams"
            f"{linear_baseline.feature_choice_words(baseline.get('feature_choice'))}; stored in baseline/): "
            f"validation macro-F1 {baseline['validation'].get('macro_f1', 0):.4f}, test macro-F1 "
            f"{baseline['test'].get('macro_f1', 0):.4f}.\n\n")


def champion_predictions(lake: Lake, champion: dict[str, Any], validation: SplitData, tokenizer_hash: str,
                         max_length: int, pad_id: int, batch_size: int, device: Any,
                         windowing: Windowing | None = None, as_sets: bool = False,
                         targets: np.ndarray | None = None,
                         label_names: Sequence[str] = ()) -> list[Answer] | None:
    """The champion's predicted labels for the validation rows, or None when its folder cannot be loaded: label
    names, or with `as_sets` tuples of names (a multi-label champion's labels above its thresholds, a single-label
    one's label alone). A multi-label champion asked for single labels answers its most probable one. With the
    validation rows' 0/1 `targets` over `label_names`, a multi-label champion's thresholds are tuned again on these
    rows, as the new model's were (`multilabel.tune_thresholds`): both are judged with thresholds fitted to the same
    rows, so the gate does not favour the model whose thresholds saw them.

    Rows are this run's token ids when the champion shares the tokenizer (read in `windowing`'s windows when this
    run reads whole documents); otherwise their curated texts are tokenized again with the champion's own
    tokenizer at the max_length it was trained with (read in windows of that length when this run reads whole
    documents, else truncated).
    """
    url = lake.model_url(champion["model_version"])
    manifest = model_manifest(lake, champion["model_version"])
    try:
        folder = resolve_model_dir(url, "champion")
        model = load_classifier(folder).to(device)
    except (ConfigError, OSError) as exc:
        log.warning("champion %s cannot be loaded (%s): comparing with its recorded score", url, exc)
        return None
    sequences = validation.sequences
    if manifest.get("tokenizer_hash") != tokenizer_hash:
        tokenizer = load_tokenizer(folder)
        length = int(manifest.get("max_length") or max_length)
        encoder = fast_encoder(tokenizer, None if windowing is not None else length)
        windowing = Windowing.of(encoder, length) if windowing is not None else None
        flat, offsets, _ = encode_texts(encoder, texts_of(lake, validation), 1024)
        sequences = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        pad_id = tokenizer.pad_token_id or 0
    logits = predict_logits(model, sequences, batch_size, pad_id, device, windowing=windowing)
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    if as_sets and is_multi_label(model.config):
        probabilities = sigmoid(logits)
        thresholds = thresholds_of(storage.read_json(os.path.join(folder, "calibration.json")), names)
        if targets is not None:
            for j, name in enumerate(names):
                if name in label_names:
                    column = targets[:, [list(label_names).index(name)]]
                    thresholds[j] = tune_thresholds(probabilities[:, [j]], column)[0]
        return names_of(predicted_sets(probabilities, thresholds), names)  # type: ignore[return-value]
    best = [names[i] for i in logits.argmax(axis=1).tolist()]
    return [(name,) for name in best] if as_sets else best  # type: ignore[misc]
