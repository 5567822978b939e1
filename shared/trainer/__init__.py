"""The local step-by-step distillation trainer (CPU; torch + transformers)."""
