"""The manual's examples, executed (`make docs-test`): the shell lines of the tutorials, of the README and of the
multi-label how-to run as written, in order (a README line that is also a tutorial's runs once, there), in a fresh
folder laid out as a clone after `make demo` built `.venv` (every file of the checkout linked in; no lake, no data/);
then the python blocks that read the lakes those lines wrote run against them, and what each block and its prose
promise is checked against real values: partitions, row counts, columns, the summary's lines.

What differs from a user's terminal is all in this file's first lines:

- BUDGET: `--set` overrides appended to every `bert-pipeline` line, and given to `make demo` / `make multilabel` as
  BERT_PIPELINE_ARGS (their recipes append it): a tiny BERT built here instead of the packaged MiniLM, so that the
  target takes minutes on 2 cores. BUDGET_ENV: one thread per process. The data, configs and commands are the docs'.
- Data files: where a page shows the head of a file (`data/reviews.csv`), the file is that text followed by stand-in
  rows of real demo tweets (a model needs a few hundred labelled rows); BEFORE: what a page says the user did between
  two lines (changed a file).
- NOT_RUN: the lines that cannot run here, each with its reason and, where a later line needs its output, what the
  test does instead. test_every_shell_line_runs_or_says_why fails on any other line of these pages that did not run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
import yaml

from bert_pipeline.lake.manifests import Lake
from tests.helpers import build_tiny_model, code_blocks, demo_frame

ROOT = Path(__file__).resolve().parents[2]

# --- what differs from a user's terminal ------------------------------------------------------------------------------

BUDGET = {  # appended to each bert-pipeline line (keys the line sets itself are left to it)
    "train.base_model": "{tiny_model}",  # a 2-layer, hidden-32 BERT (tests/helpers.build_tiny_model), not MiniLM
    "train.learning_rate": "1e-3",  # what such a tiny model needs to learn in a few hundred steps
    "train.linear_baseline": "false",  # a tiny BERT loses to TF-IDF; the gate against the majority class stays
    "train.min_steps": "100",  # epochs: auto on a few hundred rows (my.yaml): 100 steps, not 300
}

BUDGET_ENV = {  # added to every line's environment
    "OMP_NUM_THREADS": "1",  # a tiny model gains nothing from a second thread, and on a shared 2-core machine
    # OpenMP's spinning threads made each training step 3-4 times slower
}


def write_disaster_stand_in(folder: Path) -> str:
    """`make multilabel-data`'s output, in its shape: jsonl rows of text, a set of topics, a split."""
    import random

    rng = random.Random(0)
    topics = {
        "water": "water thirsty drinking well bottles clean wells pipes tanker dehydrated".split(),
        "food": "food hungry rice flour meals bread ration beans cooking maize".split(),
        "shelter": "shelter tents roof homeless blankets camp housing tarpaulin sleeping collapsed".split(),
        "medical_help": "doctor injured hospital medicine wounded clinic nurse fever bleeding ambulance".split(),
    }
    filler = "please we need in our village since the storm help urgently people here many families".split()
    rows = []
    for n in range(320):
        chosen = [] if n % 10 == 9 else sorted(rng.sample(list(topics), rng.choice([1, 1, 2, 3])))
        words = [w for topic in chosen for w in rng.sample(topics[topic], 4)] + rng.sample(filler, 6)
        rng.shuffle(words)
        split = "train" if n % 10 < 8 else ("validation" if n % 10 == 8 else "test")
        rows.append({"text": " ".join(words), "labels": chosen, "split": split})
    path = folder / "data" / "disaster_messages.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return f"wrote a stand-in {path.relative_to(folder)} ({len(rows)} rows)"


def check_make_demo_recipe(folder: Path) -> str:
    recipe = subprocess.run(["make", "-n", "demo"], cwd=folder, env=user_env(folder), capture_output=True, text=True)
    assert recipe.returncode == 0, recipe.stderr
    assert recipe.stdout.split() == ".venv/bin/bert-pipeline run --config configs/demo.yaml".split(), recipe.stdout
    return "make -n demo: " + recipe.stdout.strip()


NOT_RUN: dict[str, tuple[str, Callable[[Path], str] | None]] = {  # command -> (why not, what the test does instead)
    "bert-pipeline run --config configs/demo.yaml": (
        "shown to say what `make demo` runs (bare `bert-pipeline` is not on PATH): compared with `make -n demo`'s "
        "recipe instead of run a third time", check_make_demo_recipe),
    "make multilabel-data": (
        "downloads the disaster-response messages' sdist from PyPI (the network): a stand-in "
        "data/disaster_messages.jsonl of the same shape is written instead, and make multilabel runs on it",
        write_disaster_stand_in),
    "make test": ("the test suite itself (about 25 minutes); .ci/run runs it as its own step", None),
    "make server": ("a foreground Prefect server that runs until Ctrl-C; tests/e2e/test_prefect_server.py (make "
                    "test) starts one", None),
    "make deploy": ("needs the server of make server; tests/e2e/test_prefect_server.py runs it against its own "
                    "server", None),
    "make worker": ("foreground workers that run until Ctrl-C; tests/e2e/test_prefect_server.py runs them", None),
    "make bench": ("the benchmarks, ~10 minutes, installs the bench extra: a target of its own", None),
    "make bench-quality": ("downloads data from PyPI and trains for tens of minutes: a target of its own", None),
    "make reliability": ("10 kill -9 trials per stage, ~5 minutes; make test runs 2 per stage", None),
    "make docs-test": ("this target itself", None),
    "make docs": ("CI's next step (.ci/run); tests/unit/test_config_reference.py builds the site strict too", None),
}


def change_night_one(folder: Path) -> str:
    """What the prose before `--set ingest.on_existing=replace` says the user has: night one's file, changed."""
    with (folder / "data" / "reviews.csv").open("a") as handle:
        handle.write("Changed my mind: the replacement unit works fine,positive\n")
    return "appended a row to data/reviews.csv (\"the same night, a changed file\")"


BEFORE: dict[str, Callable[[Path], str]] = {  # a line -> what its page says the user did before running it
    "ingest.on_existing=replace": change_night_one,
}


def stand_in_reviews(offset: int, rows: int) -> list[tuple[str, str]]:
    """Real demo tweets as (review, rating), positive and negative only, each text once, in a fixed order."""
    tweets = demo_frame().filter(pl.col("sentiment").is_in(["positive", "negative"])
                                 & pl.col("text").str.len_chars().is_between(40, 200)
                                 & ~pl.col("text").str.contains(r"[\r\n\u2028\u2029]"))  # one line each
    tweets = tweets.unique("text", maintain_order=True).sample(fraction=1.0, shuffle=True, seed=7)
    return list(tweets.slice(offset, rows).select("text", "sentiment").iter_rows())


NIGHT_ONE = 400  # stand-in rows after the docs' four
REPEATED, CORRECTED = 10, 5  # of night one's stand-ins sent again on night two, with the same / the other label
FLIP = {"positive": "negative", "negative": "positive"}


def stand_in(path: str) -> list[tuple[str, str]]:
    if path == "data/reviews.csv":
        return stand_in_reviews(0, NIGHT_ONE)
    if path == "data/reviews-2026-11-28.csv":
        again = stand_in_reviews(0, REPEATED + CORRECTED)
        return (stand_in_reviews(NIGHT_ONE, 150) + again[:REPEATED]
                + [(text, FLIP[rating]) for text, rating in again[REPEATED:]])
    raise AssertionError(f"no stand-in rows for {path}")


# --- running a page ---------------------------------------------------------------------------------------------------


def user_env(folder: Path) -> dict[str, str]:
    """A terminal's environment: embedded Prefect (no PREFECT_API_URL), with its own home so that runs beside this
    test do not share its database; BUDGET_ENV."""
    unset = ("PREFECT_API_URL", "PREFECT_HOME", "BERT_PIPELINE_ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # under make
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, "PREFECT_HOME": str(folder / ".prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "HF_HUB_OFFLINE": "1", **BUDGET_ENV}


def command_of(line: str) -> str:
    """A shell line without its comment, words single-spaced: the key of NOT_RUN."""
    return " ".join(shlex.split(line, comments=True))


def budgeted(line: str, model: Path) -> tuple[str, dict[str, str]]:
    """The line as run here, and the environment it adds: BUDGET's --set pairs after a bert-pipeline line's own."""
    words = shlex.split(line, comments=True)
    own = {words[i + 1].split("=")[0] for i, w in enumerate(words[:-1]) if w in ("--set", "-s")}
    extra = [item for key, value in BUDGET.items() if key not in own
             for item in ("--set", f"{key}={value.format(tiny_model=model)}")]
    if words[0].endswith("bert-pipeline") and words[1] != "migrate-lake":
        return shlex.join(words + extra), {}
    if words[:2] in (["make", "demo"], ["make", "multilabel"]):
        return line, {"BERT_PIPELINE_ARGS": shlex.join(extra)}
    return line, {}


@dataclass
class Ran:
    page: str
    block: int
    line: str
    command: str
    stdout: str
    seconds: float


@dataclass
class Page:
    name: str
    blocks: list[tuple[str, str]]
    shell: dict[int, list[Ran]] = field(default_factory=dict)
    python: dict[int, tuple[dict, str]] = field(default_factory=dict)

    def ran(self, text: str, nth: int = 0) -> str:
        """What the nth shell line of the page holding `text` printed."""
        return [ran for runs in self.shell.values() for ran in runs if text in ran.line][nth].stdout

    def py(self, text: str) -> tuple[dict, str]:
        """The names and the output of the python block holding `text`."""
        (found,) = [result for number, result in self.python.items() if text in self.blocks[number][1]]
        return found

    def body(self, lang: str, text: str) -> str:
        (found,) = [body for kind, body in self.blocks if kind == lang and text in body]
        return found


def fenced(text: str) -> list[tuple[str, str, str]]:
    """(language, body dedented, the paragraph just before the block) of each fenced block, as code_blocks finds
    them."""
    found, prose, lang, body = [], [], None, []
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, body = fence.group(1), []
        elif fence:
            paragraph = "\n".join(prose).strip().split("\n\n")[-1]
            found.append((lang, textwrap.dedent("\n".join(body) + "\n"), paragraph))
            lang, prose = None, []
        elif lang is not None:
            body.append(line)
        else:
            prose.append(line)
    assert [(lang, body) for lang, body, _ in found] == [
        (lang, textwrap.dedent(body)) for lang, body in code_blocks(text)]
    return found


def shell_lines(body: str) -> list[str]:
    lines = [line.strip().removeprefix("$ ") for line in body.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


class Workspace:
    """A folder laid out as a clone with `.venv` built: every top-level file and folder of the checkout linked, except
    what git ignores (lake, data, site); `.venv` linked too."""

    def __init__(self, folder: Path, model: Path) -> None:
        self.folder, self.model, self.ran, self.notes = folder, model, [], []
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True)
        names = {path.split("/")[0] for path in listed.stdout.split()} if listed.returncode == 0 else {
            p.name for p in ROOT.iterdir() if p.name not in (".git", "lake", "lake-multilabel", "data", "site")}
        for name in names | {".venv"}:
            (folder / name).symlink_to(ROOT / name)
        self.env = user_env(folder)
        # `make demo` must not reinstall: pip install -e from here would point the venv at this temporary folder
        stale = subprocess.run(["make", "-q", ".venv/.installed"], cwd=folder, env=self.env, capture_output=True)
        assert stale.returncode == 0, ".venv is older than pyproject.toml: run `make venv` (make docs-test does)"

    def shell(self, page: str, block: int, line: str) -> Ran:
        command, extra = budgeted(line, self.model)
        start = time.monotonic()
        done = subprocess.run(["bash", "-c", command], cwd=self.folder, env={**self.env, **extra},
                              capture_output=True, text=True, timeout=1200)
        ran = Ran(page, block, line, command if not extra else f"{extra} {command}", done.stdout,
                  time.monotonic() - start)
        self.ran.append(ran)
        with (self.folder.parent / f"{self.folder.name}.log").open("a") as log:  # what each line printed, for a failure
            log.write(f"\n=== {ran.seconds:.1f} s, exit {done.returncode}: {ran.command}\n{done.stdout}\n{done.stderr}")
        assert done.returncode == 0, f"{page} block {block}: `{ran.command}` exited {done.returncode}:\n" + (
            done.stdout[-3000:] + done.stderr[-5000:])
        return ran

    def python(self, label: str, code: str) -> tuple[dict, str]:
        names: dict = {"__name__": "__docs__"}
        out, here = io.StringIO(), os.getcwd()
        os.chdir(self.folder)
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, label, "exec"), names)  # noqa: S102 - the docs' own example
            for key, value in list(names.items()):  # a lazy frame reads its relative paths when collected
                if isinstance(value, pl.LazyFrame):
                    names[key] = value.collect()
        finally:
            os.chdir(here)
        return names, out.getvalue()

    def write_file(self, path: str, body: str) -> None:
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".csv"):
            with io.StringIO() as rows:
                csv.writer(rows, lineterminator="\n").writerows(stand_in(path))
                body += rows.getvalue()
        target.write_text(body)

    def walk(self, name: str, files: dict[str, str] | None = None, only: tuple[str, ...] = ()) -> Page:
        """Runs a page's blocks in order (or those holding a text of `only`): each shell line (or its NOT_RUN
        stand-in), each python block; a yaml or text block holding a key of `files` is written to its path, which the
        paragraph before the block must name."""
        blocks = fenced((ROOT / name).read_text())
        page = Page(name, [(lang, body) for lang, body, _ in blocks])
        for number, (lang, body, before) in enumerate(blocks):
            if only and not any(text in body for text in only):
                continue
            path = next((path for key, path in (files or {}).items() if key in body), None)
            if lang in ("text", "yaml") and path:
                assert f"`{path}`" in before, (name, number, path, before)
                self.write_file(path, body)
            elif lang in ("sh", "bash", "shell", "console"):
                page.shell[number] = []
                for line in shell_lines(body):
                    if command_of(line) in NOT_RUN:
                        _, instead = NOT_RUN[command_of(line)]
                        if instead:
                            self.notes.append(instead(self.folder))
                        continue
                    for text, action in BEFORE.items():
                        if text in line:
                            self.notes.append(action(self.folder))
                    page.shell[number].append(self.shell(name, number, line))
            elif lang == "python":
                page.python[number] = self.python(f"{name} block {number}", body)
        return page


# --- the runs ---------------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.timeout(3600)
OTHER_LAKES = ("my-lake", "lake-multilabel", "lake/ner/")  # lake/ner/: tests/unit/test_ner_nights.py
TODAY = datetime.now(timezone.utc).date().isoformat()  # the default run_date (UTC)


@pytest.fixture(scope="module")
def docs_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("docs-model"), demo_frame()["text"].head(3000).to_list())


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, docs_model: Path) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("clone"), docs_model)


@pytest.fixture(scope="module")
def first_night(clone: Workspace) -> Page:
    return clone.walk("docs/tutorials/first-night.md")


@pytest.fixture(scope="module")
def lake_readers(clone: Workspace, first_night: Page) -> dict[str, tuple[dict, str]]:
    """Every other python block of the README and the docs that reads ./lake, on the demo's lake."""
    ran = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        name = str(page.relative_to(ROOT))
        if name == first_night.name:
            continue
        for number, (lang, code) in enumerate(code_blocks(page.read_text())):
            if lang == "python" and "lake" in code and not any(other in code for other in OTHER_LAKES):
                ran[f"{name} block {number}"] = clone.python(f"{name} block {number}", code)
    return ran


@pytest.fixture(scope="module")
def own_csv(clone: Workspace) -> Page:
    return clone.walk("docs/tutorials/your-own-csv.md",
                      files={"review,rating": "data/reviews.csv", "data_root: ./my-lake": "my.yaml"})


@pytest.fixture(scope="module")
def two_nights(clone: Workspace, own_csv: Page) -> Page:
    return clone.walk("docs/tutorials/two-nights-and-corrections.md",
                      files={"review,rating": "data/reviews-2026-11-28.csv"})


@pytest.fixture(scope="module")
def multilabel(clone: Workspace) -> Page:
    return clone.walk("docs/how-to/multi-label.md")


def doc_body(page: str, lang: str, text: str) -> str:
    """The one block of a page in `lang` that holds `text`."""
    (found,) = [body for kind, body in code_blocks((ROOT / page).read_text()) if kind == lang and text in body]
    return found


# --- what the pages promise -------------------------------------------------------------------------------------------


def summary(stdout: str) -> dict[str, str]:
    """stage -> outcome, from the summary a run prints last."""
    tail = stdout.split("bert-pipeline finished:")[-1]
    stage = r"^  (ingest|curate|tokenize|train|score|report)\s+(\S+(?: \([^)]*\))?)"
    return {m[1]: m[2].strip() for m in re.finditer(stage, tail, re.M)}


def counts(lake: Path, table: str, run_date: str) -> dict:
    manifest = Lake(str(lake)).read_manifest(table, run_date)
    assert manifest is not None, f"no committed {table} partition for {run_date} in {lake}"
    return manifest["counts"]


def template(doc_line: str) -> re.Pattern:
    """A line of the docs' example output as a pattern: dates, <placeholders> and spacing stand for any."""
    pattern = re.escape(doc_line.strip())
    for shown, anything in ((r"2026\-11\-28", r"\d{4}-\d{2}-\d{2}"), (r"<fingerprint>", r"[0-9a-f]+"),
                            (r"<the\ reason>", r".+"), (r"<n>", r"\d+"), (r"<a>", r"[\d.]+"), (r"<f>", r"[\d.]+")):
        pattern = pattern.replace(shown, anything)
    return re.compile(re.sub(r"(\\ )+", r"\\s+", pattern))


def test_first_night(first_night: Page, clone: Workspace) -> None:
    lake = clone.folder / "lake"
    demo = first_night.ran("make demo")
    # the summary looks as the page shows it, line for line (dates, versions and figures aside)
    shown = [line for line in first_night.body("text", "ingest    done").splitlines() if line.strip()]
    printed = demo.split("bert-pipeline finished:")[-1].splitlines()
    at = 0
    for line in shown:
        pattern = template(line)
        while at < len(printed) and not pattern.fullmatch(printed[at].strip()):
            at += 1
        assert at < len(printed), f"the summary has no line like {line!r}:\n" + "\n".join(printed)
    assert all(outcome == "done" for outcome in summary(demo).values()) and len(summary(demo)) == 6
    assert f"./lake/predictions/run_date={TODAY}" in demo  # "The run_date is today's date in UTC"
    assert "promoted to champion" in demo
    # 38,158 tweets (README, index, this page); raw = curated + rejects; 8,000 training samples
    raw = counts(lake, "curated", TODAY)
    assert raw["raw_rows"] == 38_158 == raw["curated_rows"] + raw["rejected_rows"], raw
    assert re.search(r"trained on: 8000 train / \d+ validation / \d+ test rows of 1 night", demo)
    assert counts(lake, "predictions", TODAY)["rows"] == raw["curated_rows"]

    # 3. ls lake: the folders the paragraph after it names, no more
    listing = first_night.ran("ls lake").split()
    named = re.findall(r"`([\w]+)`", first_night_paragraph_after(first_night.body("sh", "ls lake\n")))
    assert sorted(listing) == sorted(named), (listing, named)
    assert set(first_night.ran("ls lake/predictions").split()) == {
        "lake/_manifests/predictions:", f"run_date={TODAY}.json", "lake/predictions:", f"run_date={TODAY}"}
    # the predictions: one row per curated tweet, the four columns printed
    names, printed = first_night.py('predictions = pd.read_parquet("lake/predictions")')
    assert len(names["predictions"]) == raw["curated_rows"]
    for column in ("doc_id", "predicted_label", "confidence", "run_date"):
        assert column in printed
    assert set(names["predictions"]["predicted_label"].dropna()) <= {"negative", "neutral", "positive"}
    # what curation removed: "exact and near duplicates are most of them"
    names, printed = first_night.py('rejects = pd.read_parquet("lake/rejects")')
    reasons = names["rejects"]["reason"].value_counts()
    assert len(names["rejects"]) == raw["rejected_rows"]
    assert set(reasons.index[:2]) == {"exact_duplicate", "near_duplicate"} and "near_duplicate" in printed
    assert (names["rejects"]["reason"].isin(["exact_duplicate", "near_duplicate"])).sum() > len(names["rejects"]) / 2
    # the report with its plots, the model folder, the champion
    report = lake / "reports" / f"run_date={TODAY}"
    assert (report / "report.md").exists() and {"confusion_matrix.png", "score_distribution.png"} <= {
        p.name for p in report.glob("*.png")}
    champion = json.loads((lake / "models" / "_champion.json").read_text())
    model = next((lake / "models").glob(f"{TODAY}-*"))
    assert model.name in json.dumps(champion)
    assert {"config.json", "metrics.json", "README.md", "_manifest.json"} <= {p.name for p in model.iterdir()}

    # 4. the same day again: every stage skipped, nothing recomputed
    again = summary(first_night.ran("make demo", 1))
    assert set(again) >= {"ingest", "curate", "tokenize", "train", "score"}
    assert all(again[stage] == "skipped (already committed)" for stage in ("ingest", "curate", "tokenize", "score"))
    assert again["train"].startswith("skipped"), again
    # the named night: the same tweets again, every one of them rejected as a duplicate of the first night's
    named_night = counts(lake, "curated", "2026-11-28")
    assert named_night["raw_rows"] == 38_158 and named_night["curated_rows"] == 0, named_night

    # 5. all the training rows: ingest skipped; curate and tokenize again, as the earlier night 2026-11-28 came in
    # since (each night is deduplicated against the nights before it); train on ~28.5k rows
    everything = first_night.ran("train.max_train_samples=null")
    outcomes = summary(everything)
    assert outcomes["ingest"] == "skipped (already committed)", outcomes
    again = "done" if TODAY > "2026-11-28" else "skipped (already committed)"
    assert outcomes["curate"] == outcomes["tokenize"] == again and outcomes["train"] == "done", outcomes
    trained = int(re.search(r"trained on: (\d+) train", everything)[1])
    assert 28_000 <= trained <= 29_000, trained


def first_night_paragraph_after(body: str) -> str:
    text = (ROOT / "docs" / "tutorials" / "first-night.md").read_text()
    return text[text.index(body) + len(body):].split("```", 1)[1].strip().split("\n\n")[0]


def test_every_lake_reader_runs_on_the_demo_lake(lake_readers: dict, clone: Workspace) -> None:
    lake = Lake(str(clone.folder / "lake"))
    rows = lake.dataset("predictions").to_table().num_rows
    assert rows > 30_000 and len(lake_readers) >= 10
    for label, (names, printed) in lake_readers.items():
        if "predictions" in names and not isinstance(names["predictions"], str):
            assert len(names["predictions"]) == rows, label
        assert printed.strip() or set(names) - {"__name__", "__builtins__"}, label


def test_your_own_csv(own_csv: Page, clone: Workspace) -> None:
    lake = clone.folder / "my-lake"
    run = own_csv.ran("run --config my.yaml")
    assert all(outcome == "done" for outcome in summary(run).values()) and len(summary(run)) == 6, summary(run)
    assert "promoted to champion" in run
    shown = own_csv.body("text", "review,rating").splitlines()[1:]
    night = counts(lake, "curated", TODAY)
    assert night["raw_rows"] == len(shown) + NIGHT_ONE == night["curated_rows"] + night["rejected_rows"], night
    # 4. curation: every dropped row with its reason; the split and the label conflicts
    names, printed = own_csv.py('pd.read_parquet("my-lake/rejects")')
    assert len(names["rejects"]) == night["rejected_rows"] and "reason" in printed
    curated = names["curated"]
    assert len(curated) == night["curated_rows"] and set(curated["split"]) == {"train", "validation", "test"}
    texts = dict(zip(curated["text"], curated["label"]))
    assert texts['It\'s a 24" monitor and it fits my desk'] == "positive"  # the quote in the text kept as written
    assert texts["Arrived broken, the box was soaked"] == "negative"
    assert pd.isna(texts["Took three weeks to arrive"])  # the empty label: scored, not trained on
    # 5. a prediction for every curated row, the empty-labelled one too
    names, printed = own_csv.py('pd.read_parquet("my-lake/predictions")')
    predictions = names["predictions"]
    assert len(predictions) == len(curated) and set(predictions["doc_id"]) == set(curated["doc_id"])
    for column in ("doc_id", "predicted_label", "confidence"):
        assert column in printed
    assert set(predictions["predicted_label"]) <= {"negative", "positive"}
    # the --set example: curate's setting changed, so curate and what follows it run again
    rerun = summary(own_csv.ran("curate.min_chars=10"))
    assert rerun["ingest"].startswith("skipped") and rerun["curate"] == "done", rerun


def test_two_nights_and_corrections(two_nights: Page, clone: Workspace) -> None:
    lake = clone.folder / "my-lake"
    assert sorted(p.name for p in (lake / "curated").iterdir()) == ["run_date=2026-11-27", "run_date=2026-11-28"]
    night_one = summary(two_nights.ran("run_date=2026-11-27"))
    assert len(night_one) == 6 and all(outcome == "done" for outcome in night_one.values()), night_one
    assert "promoted to champion" in two_nights.ran("run_date=2026-11-27")
    night_one_rows_before = len(doc_body("docs/tutorials/your-own-csv.md", "text", "review,rating").splitlines()) - 1
    second = two_nights.ran("run_date=2026-11-28")
    assert re.search(r"trained on: \d+ train / \d+ validation / \d+ test rows of 2 night\(s\) \(2026-11-27 \.\. "
                     r"2026-11-28\), [1-9]\d* label correction\(s\) applied", second), second
    shown = two_nights.body("text", "review,rating").splitlines()[1:]
    night = counts(lake, "curated", "2026-11-28")
    assert night["raw_rows"] == len(shown) + 150 + REPEATED + CORRECTED, night
    # 4. the repeats: the docs' correction and repeat, and the stand-ins'
    names, printed = two_nights.py("tonight = ")
    tonight = names["tonight"]
    corrections = tonight[tonight["reason"] == "label_correction"]
    assert len(corrections) == 1 + CORRECTED and "label_correction" in printed
    assert "Arrived broken, the box was soaked" in set(corrections["text"])
    night_one_rows = pd.read_parquet(lake / "curated" / "run_date=2026-11-27")
    first_id = night_one_rows.loc[night_one_rows["text"] == "Arrived broken, the box was soaked", "doc_id"].item()
    corrected = corrections.loc[corrections["text"] == "Arrived broken, the box was soaked", "duplicate_of"]
    assert corrected.item() == first_id  # night one's row
    repeats = tonight[tonight["reason"] == "exact_duplicate"]
    assert "Works exactly as described" in set(repeats["text"]) and len(repeats) >= 1 + REPEATED
    # 5. the training set of night two's model
    names, printed = two_nights.py('["training_set"]')
    assert names["training_set"]["run_dates"] == ["2026-11-27", "2026-11-28"]
    assert names["training_set"]["corrections_applied"] >= 1
    # 6. the gate: one decision per model, the champion named
    names, printed = two_nights.py("champion_decision")
    first, second_model = (re.search(r"^model (\S+): (NOT )?promoted", two_nights.ran(night), re.M)
                           for night in ("run_date=2026-11-27", "run_date=2026-11-28"))
    for model in (first, second_model):  # "<model_version> <promoted> <reason>", then _champion.json
        assert re.search(rf"^{model[1]} {model[2] is None} \S", printed, re.M), (model[0], printed)
    newest = second_model[1] if second_model[2] is None else first[1]
    assert f'"model_version": "{newest}"' in printed.split("\n{", 1)[1]
    # both nights in one table, each under the model that scored it
    names, printed = two_nights.py('pd.read_parquet("my-lake/predictions")')
    assert set(names["predictions"]["run_date"].astype(str)) == {"2026-11-27", "2026-11-28"}
    assert "2026-11-27" in printed and "2026-11-28" in printed
    # 7. night one again: nothing but score recomputed, and score only if the champion changed
    rerun = summary(two_nights.ran("run_date=2026-11-27", 1))
    assert all(rerun[stage].startswith("skipped") for stage in ("ingest", "curate", "tokenize", "train")), rerun
    scored_by = set(pd.read_parquet(lake / "predictions" / "run_date=2026-11-27")["model_version"])
    assert scored_by == {champion_version(lake)}
    # night one's file changed: replace drops its committed rows for the new ones
    replaced = summary(two_nights.ran("ingest.on_existing=replace"))
    assert replaced["ingest"] == replaced["curate"] == "done", replaced
    assert counts(lake, "raw", "2026-11-27")["rows"] == night_one_rows_before + NIGHT_ONE + 1
    assert (lake / "reports" / "run_date=2026-11-28" / "report.md").exists()


def champion_version(lake: Path) -> str:
    champion = json.loads((lake / "models" / "_champion.json").read_text())
    return champion.get("model_version") or Path(champion["model_uri"]).name


def test_multilabel(multilabel: Page, clone: Workspace) -> None:
    lake = clone.folder / "lake-multilabel"
    run = multilabel.ran("make multilabel")
    assert summary(run)["ingest"] == "done" and summary(run)["train"] == "done", run[-3000:]
    assert "subset accuracy" in run  # a multi-label model's metrics
    # the excerpt is configs/multilabel.yaml's lines, in order
    excerpt = [line for line in multilabel.body("yaml", "label_column: labels").splitlines() if line.strip()]
    config = (ROOT / "configs" / "multilabel.yaml").read_text().splitlines()
    at = 0
    for line in excerpt:
        assert line in config[at:], f"{line!r} is not in configs/multilabel.yaml (after line {at})"
        at = config.index(line, at) + 1
    names, _ = multilabel.py('lake = "lake-multilabel"')
    curated = pl.read_parquet(f"{lake}/curated/*/*.parquet", hive_partitioning=True)
    sets = names["sets"]
    assert sets.height == curated.filter(pl.col("label").str.starts_with("[")).height > 100
    assert sets.schema["labels"] == pl.List(pl.String)
    assert set(sets["labels"].explode().drop_nulls()) == {"water", "food", "shelter", "medical_help"}
    per_row = names["per_row"]
    assert per_row.height == curated.filter(pl.col("label").is_not_null()).height
    assert per_row.filter(pl.col("labels").list.len() == 0).height > 0  # `[]`: labelled, no topic


def test_the_readme_s_own_data(two_nights: Page, clone: Workspace) -> None:
    """The README's "Your own data" is the start of the two-nights tutorial: the same config and, on an emptied lake,
    the same two lines, which ran there (running them again in another folder would redo the same work)."""
    readme = (ROOT / "README.md").read_text()
    config = yaml.safe_load(doc_body("README.md", "yaml", "data_root: ./my-lake"))
    assert config == yaml.safe_load(doc_body("docs/tutorials/your-own-csv.md", "yaml", "data_root: ./my-lake"))
    assert "`my.yaml`" in readme and "./data/reviews.csv" in config["ingest"]["sources"]
    lines = [command_of(line) for line in shell_lines(doc_body("README.md", "sh", "--config my.yaml"))]
    ran = [command_of(r.line) for r in clone.ran]
    emptied = ran.index("rm -rf my-lake")
    assert ran[emptied + 1:emptied + 3] == lines, (lines, ran)
    # "the second the next night": a partition per run_date, the model trained on every labelled night so far
    assert "promoted to champion" in two_nights.ran("run_date=2026-11-27")
    assert re.search(r"rows of 2 night\(s\) \(2026-11-27 \.\. 2026-11-28\)", two_nights.ran("run_date=2026-11-28"))
    assert "./my-lake/predictions/run_date=2026-11-28" in two_nights.ran("run_date=2026-11-28")


def test_every_shell_line_runs_or_says_why(first_night: Page, lake_readers: dict, own_csv: Page, two_nights: Page,
                                           multilabel: Page, clone: Workspace) -> None:
    """Each shell line of these pages ran (here or, the same command, on another of them) or is in NOT_RUN."""
    ran = {command_of(r.line) for r in clone.ran}
    pages = ["README.md", "docs/index.md", "docs/tutorials/first-night.md", "docs/tutorials/your-own-csv.md",
             "docs/tutorials/two-nights-and-corrections.md", "docs/how-to/multi-label.md"]
    seen = set()
    for name in pages:
        for lang, body, _ in fenced((ROOT / name).read_text()):
            if lang in ("sh", "bash", "shell", "console"):
                for line in shell_lines(body):
                    seen.add(command_of(line))
                    assert command_of(line) in ran or command_of(line) in NOT_RUN, f"{name}: {line} did not run"
    assert set(NOT_RUN) <= seen, set(NOT_RUN) - seen  # no reason kept for a line the docs no longer have
    assert len(clone.notes) == 3, clone.notes
    timings = "\n".join(f"  {r.seconds:6.1f} s  {r.page}: {r.line}" for r in clone.ran)
    print(f"\nran:\n{timings}\ninstead, and before:\n  " + "\n  ".join(clone.notes))
    print("not run:\n" + "\n".join(f"  {command}: {why}" for command, (why, _) in NOT_RUN.items()))
