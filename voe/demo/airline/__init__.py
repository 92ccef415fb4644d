"""The demo airline: a small deterministic fare website, the target of every run and test."""
