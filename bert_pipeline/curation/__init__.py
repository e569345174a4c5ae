"""Curation's parts: text cleaning, exact and near-duplicate detection, label identity and corrections."""
