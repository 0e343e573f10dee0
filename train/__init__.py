"""Everything around the model: tokenizer, data, planner, the training loop and its recipes, the CLI."""
