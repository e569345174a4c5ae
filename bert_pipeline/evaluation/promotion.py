"""Promotion with a human say (`train.promotion: approve`): a model that passed the champion gate waits for a person
instead of becoming champion at once.

The request is the model's own manifest: its `champion_decision` says `awaiting_approval`. What the person decided is
`models/<model_version>/_promotion.json` (state `approved`, `rejected`, `expired` or `superseded`, who, when, a
note), written once; a model without that file and with `awaiting_approval` is pending. Approving makes it champion
through `registry.promote`, only while the champion it was compared with is still the champion; otherwise it is
marked `superseded` (a newer decision was made meanwhile; train again to compare with the new champion). A model that
is not approved is kept in the registry, like any model the gate refused, and scoring keeps the champion.

The waiting itself (a form in the Prefect UI) is flows/promote.py; this module never imports prefect.
"""

from __future__ import annotations

from typing import Any, Literal

from bert_pipeline.evaluation import registry
from bert_pipeline.lake import storage
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.manifests import Lake, utc_now

Policy = Literal["auto", "approve"]
FINAL_STATES = ("approved", "rejected", "expired", "superseded")


def hold_for_approval(decision: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """The gate's decision as committed under `policy`: with `approve`, a model the gate would promote is not
    promoted yet but `awaiting_approval`; anything else is returned unchanged."""
    if policy != "approve" or not decision.get("promoted"):
        return decision
    return decision | {"promoted": False, "awaiting_approval": True, "gate_promoted": True,
                       "reason": f"passed the gate, waits for a person's approval (train.promotion: approve): "
                                 f"{decision['reason']}"}


def decision_url(lake: Lake, model_version: str) -> str:
    return storage.join(lake.model_url(model_version), "_promotion.json")


def status(lake: Lake, model_version: str) -> dict[str, Any]:
    """{"state": pending | approved | rejected | expired | superseded | not-requested, ...the record}; raises
    LakeStateError when no model of that version is committed."""
    manifest = registry.model_manifest(lake, model_version)
    if not manifest:
        raise LakeStateError(f"model_version {model_version!r} has no committed model under {lake.models}")
    record = storage.read_json(decision_url(lake, model_version))
    if record:
        return record
    waiting = (manifest.get("champion_decision") or {}).get("awaiting_approval")
    return {"state": "pending" if waiting else "not-requested", "model_version": model_version}


def as_decided(lake: Lake, manifest: dict[str, Any]) -> dict[str, Any]:
    """A committed model's champion decision as it stands now, for a report written later than the night: the
    manifest keeps the gate's decision as training wrote it (`awaiting_approval` under `train.promotion: approve`);
    a person's answer lives in `_promotion.json`. Approved: `promoted`; rejected, expired or superseded:
    `person_decision` names it and the reason says who decided, when and their note. `current_champion` is the
    lake's champion now (None when none), which `verdict` names instead of the one the model was compared with."""
    decision = dict(manifest.get("champion_decision") or {})
    champion = registry.read_champion(lake)
    decision["current_champion"] = champion["model_version"] if champion else None
    version = (manifest.get("metrics") or {}).get("model_version") or manifest.get("model_version")
    if not decision.get("awaiting_approval") or not version:
        return decision
    record = storage.read_json(decision_url(lake, str(version))) or {}
    state = record.get("state")
    if state not in FINAL_STATES:
        return decision
    who = f" by {record['decided_by']}" if record.get("decided_by") else ""
    when = f" at {record['decided_at']}" if record.get("decided_at") else ""
    why = "; ".join(str(record[k]) for k in ("note", "reason") if record.get(k))
    answer = f"{state}{who}{when}" + (f" ({why})" if why else "")
    return decision | {"promoted": state == "approved", "awaiting_approval": False,
                       "person_decision": None if state == "approved" else state,
                       "reason": f"{answer}; the gate had said: {decision.get('reason', '')}"}


def review(lake: Lake, model_version: str) -> dict[str, Any]:
    """What a person sees before deciding: the model's validation and test scores against the champion's on the same
    validation rows, the baseline, the training set and the gate's reason."""
    manifest = registry.model_manifest(lake, model_version)
    decision, metrics = manifest.get("champion_decision") or {}, manifest.get("metrics") or {}
    champion = registry.read_champion(lake)
    return {"model_version": model_version, "run_date": manifest.get("run_date"),
            "new_validation_macro_f1": decision.get("new_validation_macro_f1"),
            "new_validation_macro_f1_nested": decision.get("new_validation_macro_f1_nested"),
            "champion": decision.get("previous_champion"), "current_champion": champion and champion["model_version"],
            "champion_validation_macro_f1": decision.get("champion_validation_macro_f1"),
            "baseline_validation_macro_f1": decision.get("baseline_validation_macro_f1"),
            "validation_rows": decision.get("validation_rows"),
            "test_macro_f1": (metrics.get("test") or {}).get("macro_f1"),
            "test_accuracy": (metrics.get("test") or {}).get("accuracy"),
            "nights": (manifest.get("training_set") or {}).get("run_dates"), "reason": decision.get("reason")}


def review_markdown(facts: dict[str, Any]) -> str:
    """The review as the markdown the approval form shows above its fields."""

    def number(value: Any) -> str:
        return "" if value is None else f"{value:.4f}"

    nights = facts.get("nights") or []
    new = registry.figure_cell(facts.get("new_validation_macro_f1"), facts.get("new_validation_macro_f1_nested"))
    return (f"### Promote model `{facts['model_version']}` to champion?\n\n"
            f"| validation macro-F1 on {facts.get('validation_rows') or 0} rows | score |\n|---|---|\n"
            f"| this model | {new} |\n"
            f"| champion `{facts.get('champion') or 'none'}` | {number(facts.get('champion_validation_macro_f1'))} |\n"
            f"| best constant answer | {number(facts.get('baseline_validation_macro_f1'))} |\n\n"
            f"Test macro-F1 {number(facts.get('test_macro_f1'))}, accuracy {number(facts.get('test_accuracy'))}; "
            f"trained for run_date {facts.get('run_date')} on {len(nights)} night(s)"
            + (f" ({nights[0]} .. {nights[-1]})" if nights else "") + f".\n\nGate: {facts.get('reason')}\n\n"
            "Approve to make it the champion (the latest night is then rescored with it); reject to keep it in the "
            "registry, not promoted.")


def _record(lake: Lake, model_version: str, state: str, by: str, note: str, **extra: Any) -> dict[str, Any]:
    record = {"state": state, "model_version": model_version, "decided_by": by, "note": note, "decided_at": utc_now(),
              **extra}
    storage.write_json_atomic(decision_url(lake, model_version), record)
    return record


def _require_pending(lake: Lake, model_version: str) -> dict[str, Any]:
    current = status(lake, model_version)
    if current["state"] != "pending":
        raise LakeStateError(f"model {model_version} is not waiting for approval (state: {current['state']})")
    return registry.model_manifest(lake, model_version)


def approve(lake: Lake, model_version: str, by: str = "", note: str = "") -> dict[str, Any]:
    """Make a pending model the champion, if the champion it was compared with still is; else mark it superseded.
    Returns the record written (its `state` says which)."""
    manifest = _require_pending(lake, model_version)
    decision = manifest["champion_decision"]
    champion = registry.read_champion(lake)
    now_champion = champion and champion["model_version"]
    if now_champion != decision.get("previous_champion"):
        return _record(lake, model_version, "superseded", by, note, champion=now_champion,
                       reason=f"the champion changed since this model was compared (then "
                              f"{decision.get('previous_champion') or 'none'}, now {now_champion}): train again to "
                              "compare with the new champion")
    promoted = decision | {"promoted": True, "awaiting_approval": False, "approved_by": by}
    registry.promote(lake, model_version, list((manifest.get("metrics") or {}).get("label_names") or []), promoted)
    return _record(lake, model_version, "approved", by, note, previous_champion=now_champion)


def reject(lake: Lake, model_version: str, by: str = "", note: str = "", expired: bool = False) -> dict[str, Any]:
    """Keep a pending model out of service: `rejected` by a person, or `expired` when nobody answered in time."""
    _require_pending(lake, model_version)
    return _record(lake, model_version, "expired" if expired else "rejected", by, note)


def verdict(decision: dict[str, Any]) -> str:
    """What a champion decision means for scoring, in words (CLI summary, report): promoted; waiting for a person;
    refused (by the gate or a person) while a champion keeps scoring; or refused with no champion at all, when
    score.fallback decides whether anything scores. The champion named is `current_champion` when the decision
    carries it (`as_decided`: a report written later), else the one the model was compared with."""
    if decision.get("promoted"):
        return "promoted to champion"
    compared = decision.get("previous_champion")
    keeps = decision["current_champion"] if "current_champion" in decision else compared
    if decision.get("awaiting_approval"):
        waiting = ("waiting for a person's approval (train.promotion: approve); "
                   + (f"scoring keeps champion {keeps} until then" if keeps else "the lake has no champion until then"))
        if keeps != compared:
            waiting += (f"; it was compared with {compared or 'no champion'}, so approving it now would mark it "
                        "superseded")
        return waiting
    refused = f"not promoted ({decision['person_decision']})" if decision.get("person_decision") else "not promoted"
    if keeps:
        return f"{refused}: scoring keeps champion {keeps}"
    return f"{refused}, and the lake has no champion yet: score.fallback decides whether anything scores the night"
