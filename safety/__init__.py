"""Safety evaluations (adversarial prompts × variants, rated by three raters) and red-team sessions."""
