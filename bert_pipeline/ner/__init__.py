"""Named-entity recognition, the pure core (issue 22): no I/O, no torch, no prefect.

  spans    - the canonical form (text + sorted `Span(start, end, label)` in code-point offsets) and its checks;
  readers  - one exported record (doccano, Label Studio, spaCy/Prodigy/Argilla, token/tag lists) -> (text, spans);
  tagging  - tag schemes (IOB1, IOB2, BIOES, BILOU, BMES), CoNLL files, the model's BIO tag set, constrained
             Viterbi decoding, token <-> span alignment by character offsets, and window merging;
  metrics  - entity-level precision/recall/F1 (seqeval strict IOB2 semantics), type confusion, and the memorising
             baseline the gate compares a model with.
"""
