"""Phase 2: LoRA fine-tuning behind one trainer protocol, with the per-epoch callback."""
