"""Label identity: one canonical string per label from ingest to predictions, and the rule that refuses spellings
that would still be taken for one label.

The canonical form (applied at ingest, whatever the source format):
  - a label is a string, stripped of surrounding whitespace; empty or missing (null, NaN) means "no label";
  - an integral number is written as an integer, whether it arrived as int 1, float 1.0 or the text "1", "1.0",
    "+1" or "1.00" (so a pandas export whose gaps turned 0/1 into 0.0/1.0/NaN reads as the same labels);
    text with leading zeros ("007") is a code, not a number, and is kept as written;
  - any other float is written in its shortest round-trip form (0.5), booleans as true/false; text is kept as written;
  - a set of labels (a multi-label row: a list in jsonl or parquet, a JSON array in text, a list as Python or numpy
    print it (`['billing', 'refund']`, `[3 4]`, `('billing', 'refund')`: what pandas' `to_csv` writes for a list
    or tuple column), or text split at
    `ingest.label_delimiter`) is its members in canonical form, without repeats, sorted: one member is written as that
    label alone (so {"a"} and "a" are one label), any other count as a JSON array (`["billing","refund"]`, and `[]`
    for a labelled row to which no label applies). `label_set` reads either form back as a list.

Two canonical labels collide when they differ only in case, width, spacing or separating punctuation ("Positive" /
"positive", "none" / "None", "very-good" / "very good", "N/A" / "NA"; `label_key` says which marks separate): they
would be one prediction column and one label to a reader, so they are refused before anything is written, naming
both (`check_label_spellings`). Symbols and other punctuation are part of a label: "C#" / "C", "+" / "-", "😀" / "😞"
and ":)" / ":(" are two labels each; so are a sign at either end and a mark between digits: "-1" / "1", "1.1" / "11".
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import math
import re
import tokenize
import unicodedata
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping

import polars as pl

from bert_pipeline.errors import InputDataError, RowError

if TYPE_CHECKING:
    from bert_pipeline.lake.manifests import Lake

# integral numbers written as text: optional sign, no leading zeros, optional all-zero fraction ("1", "-3", "1.00")
_INTEGRAL_TEXT = re.compile(r"^[+-]?(0|[1-9][0-9]*)(\.0*)?$")


def canonical_label(value: object) -> str | None:
    """One label value in canonical form (see the module docstring); None for a missing label."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return encode_label_set(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        return None
    if (members := _array_literal(text)) is not None:
        return encode_label_set(members)
    if _INTEGRAL_TEXT.match(text):
        return str(int(float(text))) if "." in text else str(int(text))
    return text


def _json_array(text: str) -> list[object] | None:
    """The members of text that is a flat JSON array ('["a","b"]', '[]'), else None ('[draft]' is not one)."""
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value) else None


def _array_literal(text: str) -> list[object] | None:
    """The members of text that is a flat list written as JSON ('["a","b"]', '[]') or as Python or numpy print a
    list, tuple or set, else None ('[draft]', '(none)' are labels).

    Printed lists are what pandas' to_csv writes for a list column: "['a', 'b']", "[1, nan]" (nan: a missing member,
    dropped), "[np.int64(1), np.str_('a')]" (numpy 2 scalars), an array without commas "['a' 'b']", "[ 3 -4]", or
    the tuples of sklearn's MultiLabelBinarizer.inverse_transform "('a', 'b')".
    Raises InputDataError for a list of values that numpy shortened with '...' (members lost)."""
    members = _json_array(text)
    if members is not None or text[:1] + text[-1:] not in ("[]", "()", "{}") or len(text) > _LONGEST_PRINTED_LIST:
        return members
    members = _printed_list(text)
    if members is None and "..." in text and _printed_list(text.replace("...", " ")) is not None:
        raise InputDataError(f"label {text!r} is an array that numpy shortened with '...': its other members are "
                             "lost; write each row's labels as a JSON array, or as text split at ingest.label_delimiter")
    return members


_LONGEST_PRINTED_LIST = 100_000  # characters; longer text in a label column is not parsed as Python
_VALUE_END = {tokenize.STRING, tokenize.NUMBER, tokenize.NAME}
_MISSING_NAMES = {"nan", "NaN"}  # None is a constant


def _printed_list(text: str) -> list[object] | None:
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # line ends as tokenize counts them
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError):
        return None
    if text.startswith("["):
        # numpy separates members by spaces only: a comma goes wherever a value ends, a space follows and a value
        # (or a sign stuck to its number: "[ 3 -4]", never "[1 - 2]") starts
        line_starts = [0, *itertools.accumulate(len(line) + 1 for line in text.split("\n"))]
        commas = [line_starts[prev.end[0] - 1] + prev.end[1]
                  for prev, token, after in zip(tokens, tokens[1:], tokens[2:])
                  if (prev.type in _VALUE_END or prev.string == ")") and prev.end != token.start
                  and (token.type in _VALUE_END or (token.string in ("+", "-") and token.end == after.start))]
        cuts = [0, *commas, len(text)]
        text = ",".join(text[start:end] for start, end in zip(cuts, cuts[1:]))
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(tree, (ast.List, ast.Tuple, ast.Set)):
        return None
    members = [_printed_member(node) for node in tree.elts]
    if any(member is _NOT_A_MEMBER for member in members):
        return None
    return [member for member in members if member is not None]


_NOT_A_MEMBER = object()


def _printed_member(node: ast.expr) -> object:
    """One member of a printed list: a constant (bytes decoded as UTF-8), a signed number, nan (missing), or a numpy
    scalar (`np.int64(1)`); anything else (a bare word, an expression) means the text is not a printed list."""
    if isinstance(node, ast.Constant):
        return node.value.decode("utf-8", "replace") if isinstance(node.value, bytes) else node.value
    if isinstance(node, ast.Name):
        return None if node.id in _MISSING_NAMES else _NOT_A_MEMBER
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("np", "numpy") and len(node.args) == 1 and not node.keywords):
        return _printed_member(node.args[0])
    return _NOT_A_MEMBER


def encode_label_set(members: Iterable[object]) -> str | None:
    """A multi-label row's labels in canonical form: one label alone, else a sorted JSON array ('[]' when none)."""
    labels = sorted({label for label in map(canonical_label, members) if label is not None})
    if len(labels) == 1:
        return labels[0]
    return json.dumps(labels, ensure_ascii=False, separators=(",", ":"))


def is_label_set(label: str | None) -> bool:
    """True for the canonical form of a set of other than one label (a JSON array; `[draft]` is a label)."""
    return label is not None and _json_array(label) is not None


def label_set(label: str | None) -> list[str]:
    """The labels of a canonical label value: [] for None or '[]', the members of a JSON array, else [label]."""
    if label is None:
        return []
    members = _json_array(label)
    return [label] if members is None else [str(m) for m in members]


def member_labels(values: Iterable[str | None]) -> list[str]:
    """The distinct single labels of canonical label values (sets split into their members), sorted."""
    return sorted({member for value in values for member in label_set(value)})


def canonical_labels(series: pl.Series, delimiter: str | None = None) -> pl.Series:
    """A label column of any dtype (int, float with NaN gaps, bool, string, list of labels) as canonical strings
    (nulls kept); with `delimiter`, text is a set of labels split at it ("billing|refund").

    Shape: same length as `series`, dtype String. Errors: InputDataError for a struct column or nested lists.
    """
    if isinstance(series.dtype, (pl.List, pl.Array)):
        if series.dtype.inner.is_nested():  # type: ignore[union-attr]
            raise InputDataError(f"label column holds {series.dtype}, not a label or a list of labels per row")
        encoded: dict[tuple[object, ...], str | None] = {}  # one encoding per distinct set
        values = []
        for row in series.to_list():
            key = None if row is None else tuple(row)
            if key is not None and key not in encoded:
                encoded[key] = encode_label_set(key)
            values.append(None if key is None else encoded[key])
        return pl.Series(series.name, values, dtype=pl.String)
    if series.dtype.is_nested():
        raise InputDataError(f"label column holds {series.dtype}, not one label or a list of labels per row")
    if delimiter and series.dtype == pl.String:  # numbers and booleans hold no delimiter: the plain rules apply
        return _per_distinct_value(series, lambda value: split_label_text(value, delimiter))
    if series.dtype == pl.Boolean:
        return series.cast(pl.String)
    if series.dtype.is_integer():
        return series.cast(pl.String)
    if series.dtype.is_float():
        series = series.fill_nan(None)
    return _per_distinct_value(series, canonical_label)


def _per_distinct_value(series: pl.Series, canonical: Callable[[Any], str | None]) -> pl.Series:
    """series mapped through `canonical`, one Python call per distinct value, not per row; an InputDataError names
    the row (RowError: its 0-based index, said 1-based) of the first value that raised it."""
    mapping = {}
    for value in series.drop_nulls().unique(maintain_order=True).to_list():
        try:
            mapping[value] = canonical(value)
        except InputDataError as exc:
            raise RowError(series.to_list().index(value), str(exc)) from None
    return series.replace_strict(mapping, default=None, return_dtype=pl.String)


def mapped_labels(series: pl.Series, label_map: Mapping[str, str]) -> pl.Series:
    """A column of canonical labels with each label (each member of a label set) rewritten by `label_map`
    (ingest.label_map, canonical keys and labels); one Python call per distinct value. Same length, String."""
    if not label_map:
        return series

    def mapped(value: str) -> str | None:
        if is_label_set(value):
            return encode_label_set(label_map.get(member, member) for member in label_set(value))
        return label_map.get(value, value)
    return _per_distinct_value(series, mapped)


def split_label_text(text: str, delimiter: str) -> str | None:
    """One text cell as a canonical set: a JSON array as written, else the pieces between delimiters (stripped,
    empty pieces dropped); None when nothing is left (an empty cell, or one of delimiters only)."""
    stripped = text.strip()
    if (members := _array_literal(stripped)) is not None:
        return encode_label_set(members)
    pieces = [piece for piece in stripped.split(delimiter) if piece.strip()]
    return encode_label_set(pieces) if pieces else None


# What separates the words of a label without changing it: dashes, underscores, brackets, quotes and these marks.
# Other punctuation and every symbol carry meaning ("C#" is not "C", "+" is not "-", "😀" is not "😞"); so does a
# mark between two digits ("1.1" is not "11", "3/4" is not "34") and a sign at either end ("-1" is not "1", "A-" is
# not "A").
_SEPARATOR_CATEGORIES = {"Pd", "Pc", "Ps", "Pe", "Pi", "Pf"}
_SEPARATOR_MARKS = set("/\\.,;:'\"·・、")
_SIGNS = set("-+")


def label_key(label: str) -> str:
    """What two spellings of one label share: NFKC-normalised (fullwidth "Ｎ／Ａ" is "N/A"), casefolded, without
    whitespace and separators (dashes, underscores, brackets, quotes, / . , ; : and the middle dots), so "Very good",
    "very-good", "very_good", "verygood" share one key and so do "N/A" and "NA". A separator between two digits and
    a sign at the start or end stay ("1.1" / "11", "-1" / "1", "A-" / "A" are two labels each). Unicode-aware:
    Chinese or Cyrillic labels keep their letters, emoji and symbols stay. A label made of nothing else (":)", "-")
    is its own key, so ":)" and ":(" are two labels."""
    folded = unicodedata.normalize("NFKC", label).casefold().strip()
    last = len(folded) - 1

    def kept(i: int, c: str) -> bool:
        if c.isspace():
            return False
        if not (c in _SEPARATOR_MARKS or unicodedata.category(c) in _SEPARATOR_CATEGORIES):
            return True
        between_digits = 0 < i < last and folded[i - 1].isdigit() and folded[i + 1].isdigit()
        return between_digits or (c in _SIGNS and i in (0, last))
    key = "".join(c for i, c in enumerate(folded) if kept(i, c))
    return key or "".join(folded.split())


def yaml_map(pairs: Iterable[tuple[str, str]]) -> str:
    """A flow mapping to paste into the YAML config, each key and value quoted (JSON is YAML): unquoted, YAML reads
    `{Yes: yes}` as booleans and `{a: b: c}` not at all."""
    return "{" + ", ".join(f"{json.dumps(a, ensure_ascii=False)}: {json.dumps(b, ensure_ascii=False)}"
                           for a, b in pairs) + "}"


def spelling_clashes(labels: Iterable[str]) -> list[list[str]]:
    """The groups of labels (member labels of sets too) that share a `label_key`: two or more spellings of what
    would be one label, each group in `member_labels` order (sorted)."""
    groups: dict[str, list[str]] = {}
    for label in member_labels(labels):
        groups.setdefault(label_key(label), []).append(label)
    return [group for group in groups.values() if len(group) > 1]


def check_label_spellings(labels: Iterable[str], where: Mapping[str, str] | None = None, setting: str = "",
                          map_setting: str = "", counts: Mapping[str, int] | None = None,
                          held: Collection[str] = ()) -> None:
    """Refuse labels that differ only in case, punctuation or spacing, naming both spellings and where each was seen.

    `where` maps a label to where it was seen (a file and row, or a run_date); `map_setting` names the mapping that
    would merge them (ingest.label_map, ner.label_map), and the message gives that mapping. It keeps a spelling that
    committed nights hold (`held`: mapping it away would not change them), else the one `counts` (label -> tonight's
    rows or spans) holds most of, else the alphabetically first. Errors: InputDataError.
    """
    clashes = spelling_clashes(labels)
    if clashes:
        raise InputDataError(spelling_message(clashes, where or {}, setting, map_setting, counts or {}, held)
                             + ". Nothing was written.")


def spelling_message(clashes: list[list[str]], where: Mapping[str, str], setting: str, map_setting: str,
                     counts: Mapping[str, int], held: Collection[str] = ()) -> str:
    """What `check_label_spellings` says of `spelling_clashes` (see there), without the closing sentence."""
    def named(label: str) -> str:
        times = f"{counts[label]:,} time{'s' * (counts[label] != 1)}" if label in counts else ""
        seen = ", ".join(part for part in (times, f"first at {where[label]}" if label in where else "") if part)
        return f"{label!r}" + (f" ({seen})" if seen else "")

    pairs = "; ".join(" and ".join(map(named, group)) for group in clashes[:5])
    # max keeps the first of equals
    kept = [max(group, key=lambda label: (label in held, counts.get(label, 0))) for group in clashes]
    mapping = yaml_map((label, keep) for group, keep in zip(clashes, kept) for label in group if label != keep)
    return (f"{setting or 'labels'}: {pairs} are different spellings of what would be one label (they differ only "
            "in case, punctuation or spacing); write each label one way in the sources"
            + (f" or map the other spellings to one with `{map_setting}: {mapping}`" if map_setting else ""))


# A label this short that begins a longer one reads as its shortening (neg/negative, PER/PERSON, misc/miscellaneous);
# a longer one only as its plural (sport/sports). Longer prefixes with other endings are usually distinct labels
# (Music/Musical, cancel/cancel_reservation, LABEL_1/LABEL_10, E11/E11.9).
_SHORTENING_CHARS = 4
_PLURAL_ENDINGS = ("s", "es")


def look_alike_pairs(labels: Iterable[str]) -> list[tuple[str, str]]:
    """(short, long) label pairs that may be one label spelt two ways: a word label of 3-4 characters that begins
    another (a shortening), or one that is another plus s/es (a plural), compared by `label_key` (case-folded,
    punctuation and spaces as one '_'). Sorted by the short label."""
    keys = {label_key(label): label for label in labels
            if not _INTEGRAL_TEXT.match(label) and any(c.isalpha() for c in label)}
    ordered = sorted(keys)
    pairs = []
    for index, short in enumerate(ordered):
        if len(short) < 3:
            continue
        for long in ordered[index + 1:]:  # the keys that begin with `short` follow it in sorted order
            if not long.startswith(short):
                break
            rest = long[len(short):]
            if _qualified(keys[short], keys[long]):
                continue
            if (len(short) <= _SHORTENING_CHARS and rest.isalpha()) or rest in _PLURAL_ENDINGS:
                pairs.append((keys[short], keys[long]))
    return pairs


def _qualified(short: str, long: str) -> bool:
    """An upper-case label and the same in upper case with a lower-case qualifier after it: GermEval 2014's entity
    types LOC, LOCderiv, LOCpart are three types by design, not a shortening."""
    head, tail = long[:len(short)], long[len(short):]
    return (short.isupper() and head == short and tail.isalpha() and tail.islower()
            and tail not in _PLURAL_ENDINGS)  # FAQ/FAQs is a plural, told as one


def look_alike_warnings(where: Mapping[str, str], setting: str, map_setting: str,
                        new: Iterable[str] | None = None) -> list[str]:
    """Warnings about labels that may be spellings of one label the case rule (`check_label_spellings`) cannot tell:
    integers beside words (`0`, `1` beside `neg`, `pos`: an export that writes some rows' class as its id), and the
    `look_alike_pairs` (`neg` and `negative`, `sport` and `sports`). Each would be learned as a label of its own;
    nothing is refused, as either may be meant. [] when none.

    `where` maps each label to where it was first seen (a file and row, or a run_date); `setting` is the label
    setting to name, `map_setting` the mapping that would merge them (ingest.label_map, ner.label_map). `new`: the
    labels no other night holds; when given, only findings that involve one of them are told (a pair told once is
    not told again every night).
    """
    def named(labels: list[str]) -> str:
        shown = ", ".join(f"{label!r} ({where[label]})" for label in labels[:5])
        return shown + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")

    fresh = set(where) if new is None else set(new)
    found = []
    numbers = sorted((label for label in where if _INTEGRAL_TEXT.match(label)), key=lambda n: int(float(n)))
    words = sorted(label for label in where if not _INTEGRAL_TEXT.match(label) and any(c.isalpha() for c in label))
    if numbers and words and fresh & {*numbers, *words}:
        example = ", ".join(f"{json.dumps(number)}: <its class>" for number in numbers[:3])
        found.append(f"{setting}: the labels {named(numbers)} are numbers while {named(words)} are words. If the "
                     "numbers are those classes written as ids, each is learned as a class of its own: map them "
                     f"with {map_setting}: {{{example}}} and run the nights that hold them again from ingest; if "
                     "they are classes of their own, nothing needs doing")
    pairs = [(a, b) for a, b in look_alike_pairs(where) if a in fresh or b in fresh]
    if pairs:
        shown = "; ".join(f"{named([a])} and {named([b])}" for a, b in pairs[:5])
        more = f" (and {len(pairs) - 5} more pairs)" if len(pairs) > 5 else ""
        short, long = pairs[0]
        found.append(f"{setting}: {shown}{more} look like one label spelt two ways (a shortening or a plural), and "
                     f"each is learned as a label of its own. If they are one, map them with {map_setting}: "
                     f"{yaml_map([(short, long)])} and run the nights that hold them again from ingest; if they are "
                     "labels of their own, nothing needs doing")
    return found


CORRECTION = "label_correction"  # the rejects reason of a row that re-sends an earlier night's text with a new label
# the rejects reason of a backfilled night's row whose text a later night already holds with another label: the
# later label is the newer one and stands
SUPERSEDED = "label_superseded"


def read_corrections(lake: "Lake", run_dates: Iterable[str]) -> pl.DataFrame:
    """The current label of every earlier row that a later night corrected, from the rejects of `run_dates`.

    Returns one row per corrected doc_id: `doc_id` (the earlier kept row), `label` (the newest night's label; null
    when that night's rows disagreed among themselves: a label conflict, not trained on), `corrected_on` (that
    night's run_date) and `corrected_by` (tonight's doc_ids, comma-separated). The newest night wins.
    """
    import pyarrow.compute as pc

    correcting = {}
    for date in run_dates:  # most nights correct nothing: their rejects are not read at all
        manifest = lake.read_manifest("rejects", date)
        if manifest and (manifest.get("counts") or {}).get("rejected_by_reason", {}).get(CORRECTION):
            correcting[date] = manifest
    if not correcting:
        return pl.DataFrame(schema={"doc_id": pl.String, "label": pl.String, "corrected_on": pl.String,
                                    "corrected_by": pl.String})
    table = lake.dataset("rejects", correcting).to_table(columns=["doc_id", "duplicate_of", "label", "run_date"],
                                                           filter=pc.field("reason") == CORRECTION)
    rows = pl.from_arrow(table).with_columns(  # type: ignore[union-attr]
        corrected_on=pl.col("run_date").cast(pl.String)).drop("run_date")
    newest = rows.filter(pl.col("corrected_on") == pl.col("corrected_on").max().over("duplicate_of"))
    return newest.group_by("duplicate_of").agg(
        label=pl.when(pl.col("label").n_unique() == 1).then(pl.col("label").first()),
        corrected_on=pl.col("corrected_on").first(),
        corrected_by=pl.col("doc_id").sort().str.join(","),
    ).rename({"duplicate_of": "doc_id"}).sort("doc_id")


def apply_corrections(frame: pl.DataFrame, corrections: pl.DataFrame, label: str = "label") -> pl.DataFrame:
    """`frame` with its `label` column replaced by the corrected label for doc_ids in `corrections`."""
    if corrections.is_empty():
        return frame
    fixed = corrections.select("doc_id", pl.col("label").alias("_corrected"), pl.lit(True).alias("_is_corrected"))
    return frame.join(fixed, on="doc_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("_is_corrected")).then(pl.col("_corrected")).otherwise(pl.col(label)).alias(label),
    ).drop("_corrected", "_is_corrected")
