"""Test fakes: a fake LLM vendor server (see ``tests.fakes.vendor``)."""
