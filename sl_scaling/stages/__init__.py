"""The experiment's stages (gen, filter, train, eval): each reads the previous stage's files and the
state DB, writes its own files atomically, and records progress. The CLI and the pipeline call them."""
