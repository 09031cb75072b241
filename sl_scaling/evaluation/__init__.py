"""Phase 3's pure parts: the questions, answer parsing and scoring. No torch here."""
