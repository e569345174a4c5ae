"""Long documents cut into windows: every token read, no window over max_length, documents kept apart, and the
mean-of-logits rule; on the packaged MiniLM's real tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir
from bert_pipeline.modeling.windows import Windowing, mean_by_document


@pytest.fixture(scope="module")
def encoders():
    tokenizer = load_tokenizer(resolve_model_dir(""))
    return tokenizer, fast_encoder(tokenizer, None), fast_encoder(tokenizer, 16)


def test_windows_cover_every_token_within_max_length(encoders) -> None:
    tokenizer, whole, truncating = encoders
    windowing = Windowing.of(whole, 16)
    assert windowing.prefix == (tokenizer.cls_token_id,) and windowing.suffix == (tokenizer.sep_token_id,)
    assert (windowing.content, windowing.step) == (14, 11)
    texts = ["short review", " ".join(f"word{i}" for i in range(40)) + " 结尾很好", "exactly " * 14]
    sequences = [np.asarray(whole.encode(t).ids) for t in texts]
    windows, document = windowing.split(sequences)
    assert document.tolist() == sorted(document.tolist())  # a document's windows are contiguous, in order
    for doc, sequence in enumerate(sequences):
        mine = [w for w, d in zip(windows, document) if d == doc]
        body = sequence[1:-1].tolist()
        assert len(mine) == windowing.count(len(body))
        assert all(len(w) <= 16 and w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in mine)
        # the windows' content, overlaps removed, is the document's content: nothing skipped, nothing invented
        starts = [min(i * windowing.step, max(0, len(body) - windowing.content)) for i in range(len(mine))]
        rebuilt: list[int] = []
        for start, window in zip(starts, mine):
            rebuilt[start:] = window[1:-1].tolist()
        assert rebuilt == body
    # a text that fits is one window, exactly the sequence truncation gives
    assert windows[0].tolist() == truncating.encode(texts[0]).ids
    assert [windowing.count(n) for n in (0, 14, 15, 25, 26)] == [1, 1, 2, 2, 3]


def test_a_hundred_thousand_token_document_is_many_bounded_windows(encoders) -> None:
    _, whole, _ = encoders
    sequence = np.asarray(whole.encode("token " * 100_000).ids)
    assert len(sequence) == 100_002
    windowing = Windowing.of(whole, 128)
    windows, document = windowing.split([sequence])
    assert len(windows) == windowing.count(100_000) == 1 + -(-(100_000 - 126) // 95)
    assert max(len(w) for w in windows) == 128 and set(document.tolist()) == {0}


def test_document_logits_are_the_mean_of_their_windows() -> None:
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.5, 0.5], [-1.0, 4.0]], np.float32)
    means = mean_by_document(logits, np.array([0, 0, 1, 2]), 3)
    assert means.tolist() == [[2.0, -1.0], [0.5, 0.5], [-1.0, 4.0]]


def test_max_length_must_leave_room_for_text(encoders) -> None:
    _, whole, _ = encoders
    with pytest.raises(ValueError, match="leaves no room"):
        Windowing.of(whole, 2)
