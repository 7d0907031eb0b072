"""The result's note on what ran without the API."""

from pageperfect.services.results import offline_note


def test_the_note_names_the_offline_embedder_in_use():
    minilm = {"provider": "minilm", "model": "all-MiniLM-L6-v2-v1"}
    hashing = {"provider": "hashing", "model": "hashing-v1-1024-w0.5"}
    openai = {"provider": "openai", "model": "text-embedding-3-small"}
    brief, chat = {"provider": "brief", "model": "brief-v1"}, {"provider": "openai", "model": "gpt-4o-mini"}

    both = offline_note(minilm, brief)
    assert "all-MiniLM-L6-v2" in both and "OPENAI_API_KEY" in both and "briefs" in both
    assert "hashing" not in both
    assert "lexical hashing embedder" in offline_note(hashing, brief)
    chosen = offline_note(minilm, chat)  # a key is set, and the local model was chosen
    assert "all-MiniLM-L6-v2" in chosen and "PAGEPERFECT_EMBEDDING_PROVIDER" in chosen and "briefs" not in chosen
    assert offline_note(openai, chat) is None
    assert offline_note(None, None) is None
    assert "briefs" in offline_note(None, brief)
