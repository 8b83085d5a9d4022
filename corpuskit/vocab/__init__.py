"""Vocabulary: train a SentencePiece model, merge it into LLaMA-2's, export a Hugging Face tokenizer."""
