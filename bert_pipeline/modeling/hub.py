"""The local Hugging Face hub cache, read without downloading (HF_HUB_OFFLINE runs and quick checks)."""

from __future__ import annotations


def hub_cached(repo_id: str, filename: str) -> str | None:
    """The local path of a hub file when the Hugging Face cache holds it; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, filename)
    return path if isinstance(path, str) else None


def in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds the hub model's config.json (offline: whether it can be loaded)."""
    return hub_cached(repo_id, "config.json") is not None
