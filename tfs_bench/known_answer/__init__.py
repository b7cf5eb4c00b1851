"""The known-answer test models' binary (the models themselves: tfs_bench.export.known_answer)."""
