"""Unit tests of the pure layers (diffing, safety, status, plans): in-memory live states,
no git, no database, no processes."""
