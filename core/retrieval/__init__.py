"""Retrieval over team documents: chunking, embedding, hybrid search with access control."""
