"""Tender summarisers: an offline extractive backend (the default) and a transformers seq2seq backend, behind one
small contract that the tender-summaries agent calls off the event loop."""
