"""A user's own package, outside lionbench: a recipe and an optimizer (tests of issue 12)."""
