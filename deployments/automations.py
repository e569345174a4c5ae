"""Apply deployments/automations.yaml to the Prefect server at PREFECT_API_URL, sending to a notification block.

    python deployments/automations.py check --block slack-webhook/night-shift  # refuse an unknown block; no change
    python deployments/automations.py apply --block slack-webhook/night-shift  # (re)create each automation of the file

`--block` is `<block-type-slug>/<name>` or a name alone (when exactly one block has it); it must be a block that can
send notifications. `apply` is idempotent: each automation named in the file is deleted (every copy) and created
again. `make deploy` runs `check` before deploying anything and `apply` after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

HERE = Path(__file__).resolve().parent


class Refused(Exception):
    """A problem with the arguments or the file, said in one line."""


def load_specs(path: Path) -> list[dict[str, Any]]:
    specs = (yaml.safe_load(path.read_text()) or {}).get("automations") or []
    names = [spec.get("name") for spec in specs]
    if not specs or not all(names) or len(set(names)) != len(names):
        raise Refused(f"{path}: needs a list `automations:` of automations with distinct names")
    return specs


def resolve_block(client: Any, reference: str) -> tuple[UUID, str]:
    """(block document id, slug/name) of the notification block `reference` names; Refused otherwise."""
    slug, _, name = reference.rpartition("/")
    blocks = [b for b in client.read_block_documents(include_secrets=False)
              if b.name == name and not b.is_anonymous and (not slug or (b.block_type and b.block_type.slug == slug))]
    known = sorted(f"{b.block_type.slug}/{b.name}" for b in client.read_block_documents(include_secrets=False)
                   if not b.is_anonymous and b.block_type and "notify" in (b.block_schema.capabilities
                                                                           if b.block_schema else []))
    if not blocks:
        raise Refused(f"BERT_PIPELINE_NOTIFY_BLOCK: no block named {reference!r} on this server; notification blocks "
                      f"here: {', '.join(known) or 'none (create one in the UI: Blocks, e.g. Slack Webhook)'}")
    if len(blocks) > 1:
        raise Refused(f"BERT_PIPELINE_NOTIFY_BLOCK: {len(blocks)} blocks are named {name!r}; write it as "
                      f"<block-type>/<name>: {', '.join(sorted(f'{b.block_type.slug}/{b.name}' for b in blocks))}")
    block = blocks[0]
    capabilities = block.block_schema.capabilities if block.block_schema else []
    if "notify" not in capabilities:
        raise Refused(f"BERT_PIPELINE_NOTIFY_BLOCK: block {reference!r} ({block.block_type.slug}) cannot send "
                      f"notifications; notification blocks here: {', '.join(known) or 'none'}")
    return block.id, f"{block.block_type.slug}/{block.name}"


def automations(specs: list[dict[str, Any]], block_id: UUID) -> list[Any]:
    """The automations of the file, every send-notification action pointed at block_id (validated by Prefect)."""
    from prefect.events.schemas.automations import AutomationCore

    built = []
    for spec in specs:
        actions = [a | {"block_document_id": str(block_id)} if a.get("type") == "send-notification" else a
                   for a in spec.get("actions") or []]
        try:
            built.append(AutomationCore.model_validate(spec | {"actions": actions}))
        except ValueError as exc:
            raise Refused(f"automation {spec['name']!r} in automations.yaml is invalid: {exc}") from None
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "apply"])
    parser.add_argument("--block", required=True, help="<block-type-slug>/<name> of a notification block, or a name")
    parser.add_argument("--file", default=str(HERE / "automations.yaml"))
    args = parser.parse_args(argv)
    from prefect.client.orchestration import get_client

    try:
        specs = load_specs(Path(args.file))
        with get_client(sync_client=True) as client:
            block_id, block = resolve_block(client, args.block)
            built = automations(specs, block_id)
            if args.command == "check":
                print(f"alerts: {len(built)} automation(s) in {args.file} will notify {block}")
                return 0
            for automation in built:
                for old in client.read_automations_by_name(automation.name):
                    client.delete_automation(old.id)
                client.create_automation(automation)
                print(f"alerts: applied {automation.name!r} -> {block}")
    except Refused as exc:
        print(f"deployments/automations.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
