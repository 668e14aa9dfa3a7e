"""The one training loop that serves pre-training, distillation, SFT and LoRA."""
